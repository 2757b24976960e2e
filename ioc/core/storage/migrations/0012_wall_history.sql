-- The time machine: what the wall showed at a past instant needs the history of its state
-- and of readings' earlier revisions.

-- Every layout switch and pin change, from when the screens showed it (`at`, the switch's
-- announced instant), with the layout's document as it was then (a saved layout may be
-- edited later; NULL: the row was carried over from wall_state when this migration ran).
CREATE TABLE wall_history (
    version    bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    layout     text NOT NULL,
    layout_doc jsonb,
    pins       jsonb NOT NULL DEFAULT '{}',
    changed_by text,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wall_history_at ON wall_history (at DESC, version DESC);
INSERT INTO wall_history (version, at, layout, layout_doc, pins, changed_by, changed_at)
SELECT s.version, to_timestamp(s.at), s.layout, l.doc, s.pins, s.updated_by, s.updated_at
  FROM wall_state s LEFT JOIN wall_layouts l ON l.id = s.layout;

-- A replay of the past on the screens (NULL: live): {"t", "at", "speed", "paused", "by"}.
ALTER TABLE wall_state ADD COLUMN replay jsonb;

-- A reading's value as it was known before each correction: `readings` keeps one row per
-- (kpi, area, ts), so the revision a correction replaced is kept here, with when it had
-- arrived. Corrections are rare, so this costs the ingest's fast path (COPY of new
-- readings) nothing.
CREATE TABLE reading_revisions (
    kpi           text NOT NULL,
    area          text NOT NULL,
    ts            timestamptz NOT NULL,
    revision      integer NOT NULL,
    value         double precision NOT NULL,
    agency        text NOT NULL,
    msg_id        text,
    received_at   timestamptz NOT NULL,
    superseded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kpi, area, ts, revision)
);

CREATE OR REPLACE FUNCTION readings_audit_correction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (actor, action, subject, details)
    VALUES (NEW.agency, 'reading.corrected', NEW.kpi || '/' || NEW.area || '@' || to_char(NEW.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            jsonb_build_object('old_value', OLD.value, 'old_revision', OLD.revision, 'old_msg_id', OLD.msg_id,
                               'new_value', NEW.value, 'new_revision', NEW.revision, 'new_msg_id', NEW.msg_id));
    INSERT INTO reading_revisions (kpi, area, ts, revision, value, agency, msg_id, received_at)
    VALUES (OLD.kpi, OLD.area, OLD.ts, OLD.revision, OLD.value, OLD.agency, OLD.msg_id, OLD.received_at)
    ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
