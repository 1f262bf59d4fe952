# One image for every role of compose.yaml (code server, webserver, scheduler, unsubscribe web,
# the one-shot migrations): the role is the command. Build: docker build -t musicbutler .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The dependencies first, pinned by constraints.txt (the versions CI tested), so a code change
# does not reinstall them.
WORKDIR /opt/musicbutler
COPY pyproject.toml constraints.txt README.md ./
COPY musicbutler_pipeline ./musicbutler_pipeline
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --constraint constraints.txt . \
    && rm -rf build

# Recorded on every send (there is no git checkout in the image to describe).
ARG MUSICBUTLER_CODE_VERSION=""
ENV MUSICBUTLER_CODE_VERSION=${MUSICBUTLER_CODE_VERSION} \
    PATH=/opt/venv/bin:${PATH} \
    MUSICBUTLER_HOME=/srv/musicbutler \
    DAGSTER_HOME=/srv/musicbutler/dagster

COPY deploy/dagster.yaml /srv/musicbutler/dagster/dagster.yaml
COPY deploy/workspace.yaml /opt/musicbutler/workspace.yaml

# Never root: the processes own only their home (instance lock files, code-server state).
RUN useradd --system --uid 10001 --user-group --home-dir /srv/musicbutler musicbutler \
    && chown -R musicbutler:musicbutler /srv/musicbutler
USER musicbutler
WORKDIR /srv/musicbutler

CMD ["musicbutler", "--help"]
