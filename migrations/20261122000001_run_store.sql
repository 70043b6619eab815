-- flowprior run store, schema version 1.
-- Portable SQL: valid on SQLite (the default store) and on PostgreSQL (checked in CI with psql).
-- Times are Unix seconds (DOUBLE PRECISION). Run ids are assigned by the store (MAX(id) + 1 inside the
-- inserting statement), so no engine-specific auto-increment is needed.

CREATE TABLE sweeps (
    name        TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    spec_hash   TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    stage        TEXT NOT NULL,
    name         TEXT NOT NULL,
    config       TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed')),
    created_at   DOUBLE PRECISION NOT NULL,
    started_at   DOUBLE PRECISION,
    ended_at     DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION,
    attempts     INTEGER NOT NULL DEFAULT 0,
    host         TEXT,
    pid          BIGINT,
    git_rev      TEXT,
    backend      TEXT,
    seed         BIGINT,
    error        TEXT,
    UNIQUE (stage, config_hash)
);
CREATE INDEX runs_status ON runs (status);

-- A run may serve several sweeps (one prior trained once, used by every lambda).
CREATE TABLE sweep_runs (
    sweep   TEXT NOT NULL REFERENCES sweeps (name),
    run_id  INTEGER NOT NULL REFERENCES runs (id),
    PRIMARY KEY (sweep, run_id)
);

-- Typed, write-once parameters: exactly one of the value columns is set, as `kind` says.
CREATE TABLE params (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    key         TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('int', 'real', 'text', 'bool')),
    int_value   BIGINT,
    real_value  DOUBLE PRECISION,
    text_value  TEXT,
    PRIMARY KEY (run_id, key)
);

-- Metric time series. value IS NULL records a NaN (SQLite cannot store NaN).
CREATE TABLE metrics (
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    key        TEXT NOT NULL,
    step       BIGINT NOT NULL,
    value      DOUBLE PRECISION,
    logged_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, key, step)
);

-- Final value per (run, key): the value at the largest step, kept up to date by every metric batch,
-- so that listing runs never scans the series.
CREATE TABLE summary (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    key         TEXT NOT NULL,
    step        BIGINT NOT NULL,
    value       DOUBLE PRECISION,
    min_value   DOUBLE PRECISION,
    max_value   DOUBLE PRECISION,
    n           BIGINT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE artifacts (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    kind        TEXT NOT NULL,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, kind, path)
);
