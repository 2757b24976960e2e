-- A corrected ratio reading's earlier revision keeps its numerator and denominator, so a
-- series "as known then" (the time machine's charts) weighs it as it was weighed then
-- instead of taking it for a bare percentage.
ALTER TABLE reading_revisions
    ADD COLUMN numerator double precision,
    ADD COLUMN denominator double precision;

CREATE OR REPLACE FUNCTION readings_audit_correction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (actor, action, subject, details)
    VALUES (NEW.agency, 'reading.corrected', NEW.kpi || '/' || NEW.area || '@' || to_char(NEW.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            jsonb_build_object('old_value', OLD.value, 'old_revision', OLD.revision, 'old_msg_id', OLD.msg_id,
                               'new_value', NEW.value, 'new_revision', NEW.revision, 'new_msg_id', NEW.msg_id));
    INSERT INTO reading_revisions (kpi, area, ts, revision, value, agency, msg_id, received_at, numerator, denominator)
    VALUES (OLD.kpi, OLD.area, OLD.ts, OLD.revision, OLD.value, OLD.agency, OLD.msg_id, OLD.received_at,
            OLD.numerator, OLD.denominator)
    ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
