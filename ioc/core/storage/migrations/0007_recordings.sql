-- Recording: each camera's mode, the index of the MP4 segments on disk, and the spans an
-- operator keeps as evidence (retention never deletes a segment that overlaps one).
CREATE TABLE camera_recording (
    camera     text PRIMARY KEY,
    mode       text NOT NULL CHECK (mode IN ('continuous', 'events', 'off')),
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per closed segment; `path` is relative to IOC_RECORDINGS_DIR. Seeking to an
-- instant is "the last segment of this camera that starts at or before it" (the index below),
-- then a check that it ends after it: a miss is a gap.
CREATE TABLE recording_segments (
    id         bigserial PRIMARY KEY,
    camera     text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    bytes      bigint NOT NULL CHECK (bytes >= 0),
    path       text NOT NULL UNIQUE CHECK (path !~ '(^/|\.\.)'),
    kept       boolean NOT NULL DEFAULT false,
    CHECK (ended_at > started_at)
);
CREATE INDEX recording_segments_seek ON recording_segments (camera, started_at);
CREATE INDEX recording_segments_oldest ON recording_segments (started_at) WHERE NOT kept;

CREATE TABLE recording_kept (
    id         bigserial PRIMARY KEY,
    camera     text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL,
    reason     text NOT NULL DEFAULT '',
    kept_by    text NOT NULL,
    kept_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_at > started_at)
);
CREATE INDEX recording_kept_camera ON recording_kept (camera, started_at);
