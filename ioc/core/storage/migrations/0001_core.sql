-- The core schema: catalogue, areas, agencies, users, readings, dead letters, audit.
-- Works on plain PostgreSQL 15+; TimescaleDB features are layered on by ioc/storage/modes.py.

CREATE TABLE ioc_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE sectors (
    id      text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_]{0,31}$'),
    name_vi text NOT NULL,
    name_en text NOT NULL
);

CREATE TABLE kpis (
    id             text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_]{0,31}\.[a-z0-9_]{1,64}$'),
    sector         text NOT NULL REFERENCES sectors (id),
    name_vi        text NOT NULL,
    name_en        text NOT NULL,
    unit           text NOT NULL,
    unit_en        text NOT NULL DEFAULT '',
    kind           text NOT NULL CHECK (kind IN ('counter', 'gauge', 'ratio')),
    min_value      double precision NOT NULL,
    max_value      double precision NOT NULL,
    integer_only   boolean NOT NULL DEFAULT false,
    target         double precision,
    better         text NOT NULL CHECK (better IN ('higher', 'lower')),
    report_interval interval,
    description_vi text NOT NULL DEFAULT '',
    description_en text NOT NULL DEFAULT '',
    builtin        boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (min_value < max_value),
    CHECK (target IS NULL OR (target >= min_value AND target <= max_value)),
    CHECK (kind <> 'ratio' OR (min_value >= 0 AND max_value <= 100)),
    CHECK (kind <> 'counter' OR (min_value >= 0 AND integer_only))
);

CREATE TABLE areas (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9A-Za-z._-]{1,32}$'),
    parent_code text REFERENCES areas (code),
    level       text NOT NULL CHECK (level IN ('country', 'province', 'district', 'commune', 'zone')),
    name_vi     text NOT NULL,
    name_en     text NOT NULL
);
CREATE INDEX areas_parent ON areas (parent_code);

CREATE TABLE agencies (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{1,31}$'),
    name_vi    text NOT NULL,
    name_en    text NOT NULL DEFAULT '',
    sectors    text[] NOT NULL DEFAULT '{}',
    disabled   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{1,31}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'leader', 'agency', 'ingest', 'api', 'camera')),
    agency_id     text REFERENCES agencies (id),
    display_name  text NOT NULL DEFAULT '',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'agency') = (agency_id IS NOT NULL))
);

-- One row per (kpi, area, ts): replays are no-ops, corrections carry a higher revision.
-- No foreign keys here on purpose: the ingest validates against the catalogue in memory,
-- and keys on a hypertable would cost every COPY.
CREATE TABLE readings (
    ts          timestamptz NOT NULL,
    kpi         text NOT NULL,
    area        text NOT NULL,
    value       double precision NOT NULL,
    agency      text NOT NULL,
    revision    integer NOT NULL DEFAULT 0,
    msg_id      text,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (kpi, area, ts)
);

-- The newest reading per (kpi, area): what the wall shows, kept in the ingest transaction.
CREATE TABLE kpi_latest (
    kpi         text NOT NULL,
    area        text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    revision    integer NOT NULL,
    agency      text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (kpi, area)
);

CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    agency        text,
    topic         text NOT NULL,
    reason        text NOT NULL,
    reading_index integer,
    kpi           text,
    area          text,
    msg_id        text,
    payload       text NOT NULL DEFAULT '',
    payload_bytes integer NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_agency_time ON dead_letters (agency, received_at DESC);
CREATE INDEX dead_letters_time ON dead_letters (received_at DESC);

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    subject text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_time ON audit_log (at DESC);
CREATE INDEX audit_log_subject ON audit_log (subject, at DESC);

-- A correction (an UPDATE of a reading) keeps the value it replaced in the audit log,
-- whichever path wrote it.
CREATE FUNCTION readings_audit_correction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (actor, action, subject, details)
    VALUES (NEW.agency, 'reading.corrected', NEW.kpi || '/' || NEW.area || '@' || to_char(NEW.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            jsonb_build_object('old_value', OLD.value, 'old_revision', OLD.revision, 'old_msg_id', OLD.msg_id,
                               'new_value', NEW.value, 'new_revision', NEW.revision, 'new_msg_id', NEW.msg_id));
    RETURN NEW;
END $$;
CREATE TRIGGER readings_correction AFTER UPDATE ON readings
    FOR EACH ROW EXECUTE FUNCTION readings_audit_correction();

-- What each ingest worker reports every few seconds: the API's /metrics reads it.
CREATE TABLE ingest_workers (
    worker_id         text PRIMARY KEY,
    started_at        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    messages          bigint NOT NULL DEFAULT 0,
    readings_accepted bigint NOT NULL DEFAULT 0,
    readings_rejected bigint NOT NULL DEFAULT 0,
    readings_duplicate bigint NOT NULL DEFAULT 0,
    batches           bigint NOT NULL DEFAULT 0,
    buffered_messages integer NOT NULL DEFAULT 0,
    commit_lag_p50_ms double precision,
    commit_lag_p99_ms double precision,
    db_errors         bigint NOT NULL DEFAULT 0
);

-- Hours whose roll-up is out of date, written by the ingest in its own transaction. Plain
-- mode recomputes every one; TimescaleDB mode only those older than the continuous
-- aggregate policy's window (late corrections), through refresh_continuous_aggregate.
CREATE TABLE rollup_dirty (
    kpi  text NOT NULL,
    area text NOT NULL,
    hour timestamptz NOT NULL,
    PRIMARY KEY (kpi, area, hour)
);
