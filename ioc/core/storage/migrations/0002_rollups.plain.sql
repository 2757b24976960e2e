-- Hourly and daily roll-ups as plain tables, for a database without TimescaleDB (the
-- runner applies a `.plain.sql` file only in plain mode; 0002_rollups.timescale.sql makes
-- the same names continuous aggregates). The service refreshes them from rollup_dirty
-- (ioc/storage/rollups.py). Daily buckets start at local midnight in {{timezone}}.
CREATE TABLE readings_hourly (
    bucket     timestamptz NOT NULL,
    kpi        text NOT NULL,
    area       text NOT NULL,
    n          bigint NOT NULL,
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    last_value double precision NOT NULL,
    last_ts    timestamptz NOT NULL,
    PRIMARY KEY (kpi, area, bucket)
);
CREATE TABLE readings_daily (LIKE readings_hourly INCLUDING ALL);

-- Time-range scans across all KPIs (exports, retention) without a second B-tree on the hot path.
CREATE INDEX readings_ts_brin ON readings USING brin (ts);
