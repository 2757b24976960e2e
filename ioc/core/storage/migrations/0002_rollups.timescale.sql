-- TimescaleDB mode: readings become a hypertable with compression, and the hourly and daily
-- roll-ups are continuous aggregates (real-time: the not yet materialized tail is read from
-- readings). Compression and retention policies depend on settings and are applied at every
-- start by ioc/storage/modes.py.
SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '7 days', migrate_data => true);

ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'kpi, area',
    timescaledb.compress_orderby = 'ts DESC'
);

CREATE MATERIALIZED VIEW readings_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       kpi,
       area,
       count(*)          AS n,
       sum(value)        AS sum,
       min(value)        AS min,
       max(value)        AS max,
       last(value, ts)   AS last_value,
       max(ts)           AS last_ts
FROM readings
GROUP BY time_bucket(INTERVAL '1 hour', ts), kpi, area
WITH NO DATA;

CREATE MATERIALIZED VIEW readings_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       kpi,
       area,
       sum(n)                       AS n,
       sum(sum)                     AS sum,
       min(min)                     AS min,
       max(max)                     AS max,
       last(last_value, last_ts)    AS last_value,
       max(last_ts)                 AS last_ts
FROM readings_hourly
GROUP BY time_bucket(INTERVAL '1 day', bucket, {{timezone}}), kpi, area
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_hourly',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '10 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('readings_daily',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => true);
