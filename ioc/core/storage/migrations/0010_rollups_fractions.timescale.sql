-- Ratio roll-ups add up (issue 14): the continuous aggregates gain the sums of numerators
-- and denominators and the count of bare percentages. A continuous aggregate cannot gain
-- columns, so both are made again (as in 0002; WITH NO DATA: a migration runs in a
-- transaction), and real-time aggregation answers until the policies materialize them.
SELECT remove_continuous_aggregate_policy('readings_daily', if_exists => true);
SELECT remove_continuous_aggregate_policy('readings_hourly', if_exists => true);
DROP MATERIALIZED VIEW readings_daily;
DROP MATERIALIZED VIEW readings_hourly;

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
       max(ts)           AS last_ts,
       sum(numerator)    AS num_sum,
       sum(denominator)  AS den_sum,
       sum(CASE WHEN numerator IS NULL THEN 1 ELSE 0 END) AS n_bare
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
       max(last_ts)                 AS last_ts,
       sum(num_sum)                 AS num_sum,
       sum(den_sum)                 AS den_sum,
       sum(n_bare)                  AS n_bare
FROM readings_hourly
GROUP BY time_bucket(INTERVAL '1 day', bucket, {{timezone}}), kpi, area
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_hourly',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '10 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('readings_daily',
    start_offset => INTERVAL '35 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => true);
