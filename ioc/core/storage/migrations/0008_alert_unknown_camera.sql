-- A layout on the wall may name a camera the registry lacks: an alert of its own kind.
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('camera', 'kpi_target', 'agency_silent', 'camera_unknown'));
