-- Monthly roll-ups (issue 14): a province's series by month over years from hundreds of
-- units reads one row per unit and month instead of one per day (30x fewer). Months start
-- on the 1st at local midnight in {{timezone}}; ioc/storage/rollups.py recomputes the months
-- of the days it touched.
CREATE TABLE readings_monthly (LIKE readings_daily INCLUDING ALL);
INSERT INTO readings_monthly (bucket, kpi, area, n, sum, min, max, last_value, last_ts, num_sum, den_sum, n_bare)
SELECT date_trunc('month', bucket, {{timezone}}), kpi, area, sum(n), sum(sum), min(min), max(max),
       (array_agg(last_value ORDER BY last_ts DESC))[1], max(last_ts), sum(num_sum), sum(den_sum), sum(n_bare)
  FROM readings_daily
 GROUP BY 1, 2, 3;
