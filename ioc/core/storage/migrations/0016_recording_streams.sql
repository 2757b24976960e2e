-- Recording both streams: a camera with a sub-stream records it beside its main stream, so a
-- small replay tile plays the small picture (as a small live tile does). Rows from before are
-- the main stream's. Seeking is per camera and stream; retention and kept spans stay per
-- camera (a kept span keeps both streams, retention deletes both).
ALTER TABLE recording_segments
    ADD COLUMN stream text NOT NULL DEFAULT 'main' CHECK (stream IN ('main', 'sub'));
DROP INDEX recording_segments_seek;
CREATE INDEX recording_segments_seek ON recording_segments (camera, stream, started_at);
