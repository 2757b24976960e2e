-- Ratio roll-ups add up (issue 14): per bucket the sums of numerators and denominators and
-- the count of bare percentages (readings without them), so a ratio over areas or a longer
-- bucket is sum(numerator) / sum(denominator), never an average of percentages.
ALTER TABLE readings_hourly
    ADD COLUMN num_sum double precision,
    ADD COLUMN den_sum double precision,
    ADD COLUMN n_bare bigint NOT NULL DEFAULT 0;
ALTER TABLE readings_daily
    ADD COLUMN num_sum double precision,
    ADD COLUMN den_sum double precision,
    ADD COLUMN n_bare bigint NOT NULL DEFAULT 0;
-- every reading stored before this version is a bare value
UPDATE readings_hourly SET n_bare = n;
UPDATE readings_daily SET n_bare = n;
