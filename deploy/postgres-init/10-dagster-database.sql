-- Run once by the postgres image on an empty data volume: the Dagster instance's own database,
-- beside the warehouse (POSTGRES_DB=musicbutler), owned by the same user.
CREATE DATABASE dagster OWNER musicbutler;
