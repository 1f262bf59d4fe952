"""Retry and timeout settings shared by the resources that call an HTTP API."""

from dagster import ConfigurableResource
from pydantic import Field

from musicbutler_pipeline.domain.retry import RetryPolicy


class HttpClientConfig(ConfigurableResource):
    """Timeouts and retries of one HTTP client (MusicBrainz, ListenBrainz)."""

    timeout_seconds: float = Field(default=30.0, gt=0, description="per request")
    max_attempts: int = Field(default=5, ge=1, le=10, description="per request, first try included")
    backoff_seconds: float = Field(
        default=1.0, ge=0, description="first wait when the server gives no Retry-After"
    )
    max_backoff_seconds: float = Field(
        default=30.0, gt=0, description="longest wait between attempts, Retry-After included"
    )

    def retry_policy(self) -> RetryPolicy:
        """Doubling waits with equal jitter, so clients that failed together do not retry
        together."""
        return RetryPolicy(
            attempts=self.max_attempts,
            backoff=min(self.backoff_seconds, self.max_backoff_seconds),
            max_backoff=self.max_backoff_seconds,
            jitter=True,
        )
