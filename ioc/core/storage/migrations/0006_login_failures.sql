-- Failed logins, shared by every API node: N nodes must not allow N times the guesses.
-- One row per throttle key ("name@address" or "@address"), holding the times of its
-- recent failures (at most the key's limit of them, newest last); a plain table in both
-- storage modes, pruned of rows untouched for longer than the window.
CREATE TABLE login_failures (
    key        text PRIMARY KEY,
    failures   timestamptz[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_updated ON login_failures (updated_at);
