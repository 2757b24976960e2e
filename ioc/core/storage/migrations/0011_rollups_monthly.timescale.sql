-- Monthly roll-ups (issue 14): a third level of the hierarchy, months of the daily
-- aggregate, starting on the 1st at local midnight in {{timezone}}. Real-time, like the
-- others; its policy re-materializes the last three months.
CREATE MATERIALIZED VIEW readings_monthly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket, {{timezone}}) AS bucket,
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
FROM readings_daily
GROUP BY time_bucket(INTERVAL '1 month', bucket, {{timezone}}), kpi, area
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_monthly',
    start_offset => INTERVAL '3 months', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 day', if_not_exists => true);
