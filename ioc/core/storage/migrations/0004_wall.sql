-- The wall: saved layouts, the current state every hub follows, alerts, kiosk accounts.
CREATE TABLE wall_layouts (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    doc        jsonb NOT NULL,
    updated_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wall_state (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    layout     text NOT NULL,
    version    bigint NOT NULL,
    at         double precision NOT NULL,   -- epoch seconds the screens switch at
    pins       jsonb NOT NULL DEFAULT '{}',
    updated_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Open alerts are unique per (kind, source): several API nodes may raise the same one.
CREATE TABLE alerts (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('camera', 'kpi_target', 'agency_silent')),
    source     text NOT NULL,
    severity   text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    message_vi text NOT NULL,
    message_en text NOT NULL DEFAULT '',
    details    jsonb NOT NULL DEFAULT '{}',
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,
    acked_by   text,
    acked_at   timestamptz
);
CREATE UNIQUE INDEX alerts_open ON alerts (kind, source) WHERE ended_at IS NULL;
CREATE INDEX alerts_recent ON alerts (started_at DESC);

-- Kiosk browsers log in as users of role 'screen' (long-lived tokens; disable to revoke).
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'operator', 'leader', 'agency', 'ingest', 'api', 'camera', 'screen'));
