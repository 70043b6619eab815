-- flowprior run store, schema version 2: the grid points of each sweep.
-- A sweep's points are replaced when the sweep is registered again (its file changed); the runs stay.

CREATE TABLE sweep_points (
    sweep   TEXT NOT NULL REFERENCES sweeps (name),
    point   INTEGER NOT NULL,
    labels  TEXT NOT NULL,   -- JSON object: axis name -> value, and "seed"
    stage   TEXT NOT NULL,
    run_id  INTEGER NOT NULL REFERENCES runs (id),
    PRIMARY KEY (sweep, point, stage)
);
CREATE INDEX sweep_points_run ON sweep_points (run_id);
