-- Cameras that admins add through the API live here whole (the camera service reads them);
-- cameras from the registry file are only mirrored. `definition` holds the stream
-- credentials: the API never selects it.
ALTER TABLE cameras ADD COLUMN source text NOT NULL DEFAULT 'file' CHECK (source IN ('file', 'api'));
ALTER TABLE cameras ADD COLUMN definition jsonb;
ALTER TABLE cameras ADD CONSTRAINT cameras_api_defined CHECK (source = 'file' OR definition IS NOT NULL);
