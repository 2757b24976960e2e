-- Cameras, their status history (for uptime) and their events (start and end).
CREATE TABLE cameras (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{1,63}$'),
    name       text NOT NULL,
    lat        double precision,
    lon        double precision,
    area       text,
    stream_url text NOT NULL,          -- without credentials
    mode       text NOT NULL,
    tags       text[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per change of state: uptime is the time between rows.
CREATE TABLE camera_status_log (
    camera  text NOT NULL,
    at      timestamptz NOT NULL,
    state   text NOT NULL,             -- online | offline
    healthy boolean NOT NULL,
    flags   text[] NOT NULL DEFAULT '{}',
    reason  text,
    PRIMARY KEY (camera, at)
);

CREATE TABLE camera_events (
    id         bigserial PRIMARY KEY,
    camera     text NOT NULL,
    kind       text NOT NULL,          -- offline | black | uniform | frozen | blurred | scene_changed
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    details    jsonb NOT NULL DEFAULT '{}',
    acknowledged_by text,
    acknowledged_at timestamptz
);
CREATE INDEX camera_events_open ON camera_events (camera, kind) WHERE ended_at IS NULL;
CREATE INDEX camera_events_time ON camera_events (started_at DESC);
