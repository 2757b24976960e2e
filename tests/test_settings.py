"""Settings are validated at start, and a bad one is named in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc.core.settings import SettingsError, load_settings, parse_mqtt_url


def test_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file = tmp_path / "ioc.toml"
    file.write_text('mqtt_url = "mqtt://u:p%40ss@broker:1884"\napi_port = 9000\n', encoding="utf-8")
    monkeypatch.setenv("IOC_SETTINGS_FILE", str(file))
    monkeypatch.setenv("IOC_API_PORT", "9100")
    s = load_settings()
    assert s.api_port == 9100  # the environment wins over the file
    target = s.require_mqtt()
    assert (target.host, target.port, target.username, target.password) == ("broker", 1884, "u", "p@ss")


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("IOC_DATABASE_URL", "mysql://x", "IOC_DATABASE_URL"),
        ("IOC_MQTT_URL", "http://broker", "IOC_MQTT_URL"),
        ("IOC_API_PORT", "70000", "IOC_API_PORT"),
        ("IOC_JWT_SECRET", "short", "at least 32"),
        ("IOC_TIMEZONE", "Mars/Olympus", "unknown time zone"),
        ("IOC_TIMEZONE", "Asia/Kolkata", "whole number of hours"),
        ("IOC_INGEST_SHARD", "two", "IOC_INGEST_SHARD"),
        ("IOC_LOG_LEVEL", "LOUD", "IOC_LOG_LEVEL"),
    ],
)
def test_bad_settings_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=fragment):
        load_settings()


def test_missing_settings_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IOC_SETTINGS_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="no such file"):
        load_settings()


def test_required_settings_say_what_to_set() -> None:
    s = load_settings(database_url=None, mqtt_url=None)
    for call, name in ((s.require_database_url, "IOC_DATABASE_URL"), (s.require_mqtt, "IOC_MQTT_URL"),
                       (s.require_jwt_secret, "IOC_JWT_SECRET")):
        with pytest.raises(SettingsError, match=name):
            call()
    assert parse_mqtt_url("mqtts://h").port == 8883


def test_an_unwritable_spool_dir_stops_the_ingest_at_start(tmp_path: Path) -> None:
    """Found at start, not at the first database outage, when the spool is needed."""
    import os
    import subprocess
    import sys

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "IOC_MQTT_URL": "mqtt://u:p@127.0.0.1:1",
                "IOC_INGEST_SPOOL_DIR": str(blocker / "spool"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    done = subprocess.run([sys.executable, "-m", "ioc.cli", "ingest", "--worker-id", "w1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "IOC_INGEST_SPOOL_DIR" in done.stderr and "a-file" in done.stderr, done.stderr
    with pytest.raises(SettingsError, match="IOC_INGEST_SPOOL_MAX_BYTES"):
        load_settings(ingest_spool_max_bytes=-1)
