-- flowprior run store, schema version 3: every attempt at a run, the points of attempts that did
-- not finish, and what produced each run (the binary's build, the machine).
-- A run is retaken when its process died (stale heartbeat) or when a failed run is retried. The new
-- attempt starts with empty `metrics` / `summary` rows for the run: the earlier attempt's points move to
-- `attempt_metrics` (nothing is deleted), so a run's series and summary are those of one attempt.

CREATE TABLE run_attempts (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    attempt     INTEGER NOT NULL,
    -- running: holds the run now; finished / failed: ended so; abandoned: its process died or lost
    -- the run to a later attempt before it ended.
    status      TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'abandoned')),
    started_at  DOUBLE PRECISION NOT NULL,
    ended_at    DOUBLE PRECISION,
    host        TEXT,
    pid         BIGINT,
    git_rev     TEXT,
    backend     TEXT,
    build       TEXT,
    cpu         TEXT,
    threads     BIGINT,
    gpu         TEXT,
    error       TEXT,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE attempt_metrics (
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    attempt    INTEGER NOT NULL,
    key        TEXT NOT NULL,
    step       BIGINT NOT NULL,
    value      DOUBLE PRECISION,
    logged_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, attempt, key, step)
);

-- What produced the run's latest attempt: `git_rev` is now the binary's own revision (recorded at
-- build time), `build` its version, profile and compiled backends, then the machine.
ALTER TABLE runs ADD COLUMN build TEXT;
ALTER TABLE runs ADD COLUMN cpu TEXT;
ALTER TABLE runs ADD COLUMN threads BIGINT;
ALTER TABLE runs ADD COLUMN gpu TEXT;

-- Runs recorded before this version: their latest attempt, as far as the runs table knows it.
INSERT INTO run_attempts (run_id, attempt, status, started_at, ended_at, host, pid, git_rev, backend, error)
SELECT id, attempts, status, started_at, ended_at, host, pid, git_rev, backend, error
FROM runs WHERE attempts > 0 AND started_at IS NOT NULL AND status IN ('running', 'finished', 'failed');
