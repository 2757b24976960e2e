"""`ioc demo`: start everything, print where to look and how to log in, stop it all on Ctrl-C.

Order: check the ports; PostgreSQL (ours, unless IOC_DATABASE_URL) and the demo videos at
once; migrations and accounts; the MQTT broker (ours, unless IOC_MQTT_URL: Mosquitto where
installed, else `ioc broker run`) with a password file and ACL from those accounts; then the
ingest, the camera service, the API with the wall hub and the simulated agencies, each a
child process (`<data dir>/logs/<name>.log`). Stopping goes the other way: agencies, API and
cameras, then the ingest, then the broker, then the database. A child that dies stops the
demo, with the end of its log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ioc.extras.demo import broker as demo_broker
from ioc.extras.demo import cameras as demo_cameras
from ioc.extras.demo.figures import AGENCIES
from ioc.extras.demo.logins import Logins, Secrets, ensure_logins, token
from ioc.extras.demo.postgres import DemoError, EmbeddedPostgres
from ioc.extras.demo.procs import Children
from ioc.extras.demo.system import check_port, check_reachable, default_data_dir, service_user
from ioc.core.settings import Settings, parse_mqtt_url

log = logging.getLogger("ioc.demo")
SCREENS = 9


@dataclass
class Options:
    data_dir: Path
    host: str
    api_port: int
    wall_port: int
    mqtt_port: int
    cameras: int
    videos: list[Path] = field(default_factory=list)


def options_from(settings: Settings, args: Any) -> Options:
    env = os.environ
    try:
        # not 1883: a machine with a broker of its own (Debian's mosquitto service) is common
        mqtt_port = int(env.get("IOC_DEMO_MQTT_PORT", "1884"))
    except ValueError:
        raise DemoError(f"IOC_DEMO_MQTT_PORT must be a port number, got {env['IOC_DEMO_MQTT_PORT']!r}") from None
    return Options(
        data_dir=Path(args.data_dir or env.get("IOC_DEMO_DATA_DIR") or default_data_dir()).expanduser().resolve(),
        host=args.host or settings.api_host,
        api_port=args.port or settings.api_port,
        wall_port=settings.wall_port,
        mqtt_port=mqtt_port,
        cameras=args.cameras,
        videos=[Path(v) for v in (args.video or [])],
    )


class Demo:
    def __init__(self, settings: Settings, opts: Options) -> None:
        self.settings = settings
        self.opts = opts
        self.data = opts.data_dir
        self.children = Children(self.data / "logs")
        self.user: pwd.struct_passwd | None = None
        self.own_db = not settings.database_url
        self.own_broker = not settings.mqtt_url
        self.box: Secrets | None = None
        self.broker_kind = "IOC_MQTT_URL"

    # -- the steps --------------------------------------------------------------------
    def check_ports(self) -> None:
        o = self.opts
        check_port(o.host, o.api_port, "the API and the wall pages", "IOC_API_PORT (or --port)")
        if o.wall_port:
            check_port(o.host, o.wall_port, "the wall hub's websockets", "IOC_WALL_PORT")
        if self.own_broker:
            check_port(o.host, o.mqtt_port, "the demo's MQTT broker", "IOC_DEMO_MQTT_PORT")
        taken = {o.api_port, o.wall_port, o.mqtt_port if self.own_broker else -1}
        if len(taken) < 3 or 0 in (o.api_port, o.mqtt_port):
            raise DemoError(f"the API ({o.api_port}), wall hub ({o.wall_port}) and broker ({o.mqtt_port}) "
                            "ports must be three different ports")

    def prepare_dirs(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.data.chmod(0o755)  # the database's and broker's user must reach its sub-directories
        (self.data / "logs").mkdir(exist_ok=True)
        self.box = Secrets(self.data / "secrets.json")

    async def start_database(self) -> str:
        if not self.own_db:
            return self.settings.require_database_url()
        assert self.box is not None
        pg = EmbeddedPostgres(self.data, self.box.get("database", "password", token), self.user)
        self.box.save()
        fresh = await asyncio.to_thread(pg.prepare)
        if fresh:
            print(f"ioc demo: created a PostgreSQL {pg.version()} database in {pg.pgdata}", flush=True)
        child = self.children.start("postgres", pg.argv(), user=self.user, stop_signal=signal.SIGINT)
        await pg.wait_ready(lambda: child.alive)
        return pg.dsn()

    async def setup_accounts(self, dsn: str) -> Logins:
        from ioc.core.storage.pool import create_pool
        from ioc.core.storage.setup import prepare_database

        assert self.box is not None
        settings = self.settings.model_copy(update={"database_url": dsn})
        pool = await create_pool(dsn, app="ioc-demo", min_size=1, max_size=2)
        try:
            await prepare_database(pool, settings)
            async with pool.acquire() as conn:
                logins = await ensure_logins(conn, self.box, AGENCIES, owned=self.own_db)
                if self.own_broker:
                    from ioc.core.accounts import broker_accounts

                    self._broker_accounts = await broker_accounts(conn)
        finally:
            await pool.close()
        for name in logins.skipped:
            print(f"ioc demo: account {name} exists in the database with another password; left as it is",
                  flush=True)
        return logins

    async def start_broker(self) -> tuple[str, int, str, int]:
        """Start the demo's broker; return the agencies' host and port, and the services'."""
        if not self.own_broker:
            target = self.settings.require_mqtt()
            return target.host, target.port, target.host, target.port
        kind, binary = demo_broker.choose()
        self.broker_kind = kind
        host = self.opts.host
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if kind == "mosquitto":
            assert binary is not None
            # the services run here: their listener (where they choose their client ids,
            # which agencies cannot) is on the loopback, on a port of the system's choosing
            service_host, service_port = "127.0.0.1", demo_broker.free_local_port(self.opts.mqtt_port)
            conf = demo_broker.write_config(self.data / "broker", self._broker_accounts, host=host,
                                            port=self.opts.mqtt_port, service_port=service_port, user=self.user)
            child = self.children.start("broker", [binary, "-c", str(conf)], user=self.user)
            ready = b" running"
        else:
            # runs as whoever runs the demo, like the other Python services (as root, the
            # interpreter may live where the demo's system user cannot read)
            me = pwd.getpwuid(os.geteuid())
            directory = self.data / "broker"
            # one listener: the embedded broker ties a client id to the account holding it
            service_host, service_port = local, self.opts.mqtt_port
            demo_broker.write_config(directory, self._broker_accounts, host=host, port=self.opts.mqtt_port,
                                     service_port=None, user=me)
            env = {**os.environ, "IOC_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"}
            child = self.children.start("broker", demo_broker.embedded_argv(directory, host, self.opts.mqtt_port),
                                        env=env)
            ready = b"broker listening"
        await demo_broker.wait_ready(host, self.opts.mqtt_port, child.log_path, child.log_offset, lambda: child.alive,
                                     ready_text=ready)
        return local, self.opts.mqtt_port, service_host, service_port

    def service_env(self, dsn: str) -> dict[str, str]:
        assert self.box is not None
        env = dict(os.environ)
        env.update({
            "IOC_DATABASE_URL": dsn,
            "IOC_JWT_SECRET": self.box.get("api", "jwt_secret", lambda: token() + token()),
            "IOC_API_HOST": self.opts.host,
            "IOC_API_PORT": str(self.opts.api_port),
            "IOC_WALL_PORT": str(self.opts.wall_port),
            "IOC_LOG_FORMAT": os.environ.get("IOC_LOG_FORMAT", "text"),
            "PYTHONUNBUFFERED": "1",
        })
        self.box.save()
        return env

    async def start_services(self, dsn: str, broker: tuple[str, int, str, int], logins: Logins,
                             cams: list[demo_cameras.DemoCamera]) -> None:
        env = self.service_env(dsn)
        py = sys.executable
        host, port, service_host, service_port = broker

        def with_mqtt(user: str) -> dict[str, str]:
            url = self.settings.mqtt_url if not self.own_broker else \
                f"mqtt://{quote(user, safe='')}:{quote(logins.services[user], safe='')}@{service_host}:{service_port}"
            return {**env, "IOC_MQTT_URL": url or ""}

        ingest = self.children.start("ingest", [py, "-m", "ioc.cli", "ingest", "--worker-id", "ingest-demo"],
                                     env={**with_mqtt("demo-ingest"),  # the spool beside the demo's data
                                          "IOC_INGEST_SPOOL_DIR": str(self.data / "spool")})
        # on the first run the broker has no session for the ingest yet: readings published
        # before it subscribes would reach nobody, so the agencies wait for it
        await self._wait_log(ingest, "mqtt connected", 60.0)
        if cams:
            registry = self.data / "cameras.toml"
            registry.write_text(demo_cameras.registry_toml(cams), encoding="utf-8")
            self.children.start("cameras", [py, "-m", "ioc.cli", "cameras", "--registry", str(registry)],
                                env={**with_mqtt("demo-cameras"), "IOC_CAMERA_WORKER_ID": "cameras-demo"})
        self.children.start("api", [py, "-m", "ioc.cli", "serve", "--host", self.opts.host,
                                    "--port", str(self.opts.api_port)], env=with_mqtt("demo-api"))
        config = {"host": host, "port": port, "timezone": self.settings.timezone, "step_s": 10, "tick_s": 5,
                  "history_days": 30, "agencies": logins.agencies}
        path = self.data / "agencies.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f)
        self.children.start("agencies", [py, "-m", "ioc.extras.demo.agencies", str(path)], env=env)

    async def _wait_log(self, child: Any, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with open(child.log_path, "rb") as f:
                f.seek(child.log_offset)
                if text.encode() in f.read():
                    return
            if not child.alive:
                raise ChildDied(child.name, child.log_tail())
            if time.monotonic() > deadline:
                raise DemoError(f"{child.name} did not connect to the broker within {timeout:.0f} s "
                                f"(see {child.log_path})")
            await asyncio.sleep(0.1)

    def api_base(self) -> str:
        host = self.opts.host
        reach = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{reach}:{self.opts.api_port}"

    async def wait_api(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = self.api_base() + "/healthz"
        while True:
            dead = self.children.first_dead()
            if dead is not None:
                raise ChildDied(dead.name, dead.log_tail())
            try:
                status = await asyncio.to_thread(_http_status, url)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"the API did not answer on {url} within {timeout:.0f} s "
                                f"(see {self.data / 'logs' / 'api.log'})")
            await asyncio.sleep(0.2)

    async def screen_tokens(self, logins: Logins) -> dict[int, str] | None:
        """Kiosk tokens for the nine screens (kept in the secrets file); None if the API cannot issue them."""
        assert self.box is not None
        stored = self.box.data.get("screens", {})
        if len(stored) >= SCREENS:
            return {int(k): v for k, v in stored.items()}
        password = logins.people.get("admin")
        if not password:
            return None
        base = self.api_base()
        try:
            answer = await asyncio.to_thread(_http_json, base + "/api/v1/auth/token", None,
                                             {"username": "admin", "password": password})
            bearer = answer["access_token"]
            for n in range(1, SCREENS + 1):
                if str(n) in stored:
                    continue
                issued = await asyncio.to_thread(_http_json, base + "/api/v1/wall/screen-tokens", bearer,
                                                 {"name": f"screen-{n}"})
                stored[str(n)] = issued["token"]
        except (OSError, KeyError, ValueError) as exc:
            log.info("no screen tokens", extra={"why": str(exc)[:200]})
            return None
        self.box.data["screens"] = stored
        self.box.save()
        return {int(k): v for k, v in stored.items()}

    def banner(self, logins: Logins, tokens: dict[int, str] | None, cams: int, started: float) -> str:
        public = self.opts.host
        if public in ("0.0.0.0", "::"):
            public = socket.gethostname()
        web = f"http://{public}:{self.opts.api_port}"
        lines = [
            "",
            f"IOC demo is running ({time.monotonic() - started:.1f} s to start). Ctrl-C stops everything.",
            "",
            f"  API              {web}/docs",
            f"  operator console {web}/wall/console.html",
            f"  leaders' tablet  {web}/wall/tablet.html",
            f"  agency reporting {web}/wall/report.html",
            "  wall screens (one browser in kiosk mode per screen, 3 x 3):",
        ]
        for n in range(1, SCREENS + 1):
            frag = f"#token={tokens[n]}" if tokens and n in tokens else ""
            lines.append(f"    {n}  {web}/wall/screen.html?screen={n}{frag}")
        if not tokens:
            lines.append("    (no screen tokens: log in on each screen page as the operator)")
        lines += ["", "  logins (user / password):"]
        for name, password in logins.people.items():
            lines.append(f"    {name:<9} {password or '(existing account, password unchanged)'}")
        lines += [
            "",
            f"  {len(logins.agencies)} simulated agencies publish over MQTT; {cams} simulated camera(s)",
            f"  database   {'embedded PostgreSQL in ' + str(self.data / 'postgres') if self.own_db else 'IOC_DATABASE_URL'}",
            f"  broker     {self._broker_line()}",
            f"  logs       {self.data / 'logs'}/",
            f"  passwords  {self.data / 'secrets.json'} (kept between runs)",
            "",
        ]
        return "\n".join(lines)

    def _broker_line(self) -> str:
        if not self.own_broker:
            return "IOC_MQTT_URL"
        name = "Mosquitto" if self.broker_kind == "mosquitto" else "embedded MQTT 5 broker (ioc broker run)"
        return f"{name} on port {self.opts.mqtt_port}"

    def stop(self) -> None:
        for group in (["agencies", "api", "cameras"], ["ingest"], ["broker"], ["postgres"]):
            self.children.stop(group, timeout=8.0 if group != ["postgres"] else 15.0)
        self.children.stop(None)


class ChildDied(DemoError):
    def __init__(self, name: str, tail: str) -> None:
        super().__init__(f"{name} stopped unexpectedly; the end of its log:\n{tail}")
        self.name = name


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _http_json(url: str, bearer: str | None, form: dict[str, str]) -> dict[str, Any]:
    if bearer is None:
        data = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        data = json.dumps(form).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def _main(demo: Demo) -> int:
    started = time.monotonic()
    opts = demo.opts
    demo.user = service_user() if (demo.own_db or demo.own_broker) else None
    check_reachable(demo.user, demo.data)  # before initdb, which would only say "Permission denied"
    demo.check_ports()
    demo.prepare_dirs()
    cams_task = asyncio.create_task(asyncio.to_thread(_cameras_or_none, opts))  # drawn while PostgreSQL starts
    try:
        dsn = await demo.start_database()
        logins = await demo.setup_accounts(dsn)
        broker = await demo.start_broker()
    finally:
        if not cams_task.done():
            await asyncio.wait({cams_task})  # a thread cannot be cancelled: let it finish its file
    cams = cams_task.result()
    await demo.start_services(dsn, broker, logins, cams)
    await demo.wait_api()
    tokens = await demo.screen_tokens(logins)
    print(demo.banner(logins, tokens, len(cams), started), flush=True)
    while True:
        dead = demo.children.first_dead()
        if dead is not None:
            raise ChildDied(dead.name, dead.log_tail())
        await asyncio.sleep(0.5)


def _cameras_or_none(opts: Options) -> list[demo_cameras.DemoCamera]:
    try:
        import cv2  # noqa: F401
    except ImportError:
        print("ioc demo: OpenCV is not installed (pip install opencv-python-headless): no simulated cameras",
              flush=True)
        return []
    if opts.cameras <= 0 and not opts.videos:
        return []
    return demo_cameras.prepare(opts.data_dir, opts.cameras, opts.videos)


def run(settings: Settings, args: Any) -> int:
    """The `ioc demo` command; returns the exit code."""
    try:
        opts = options_from(settings, args)
        if settings.mqtt_url:
            parse_mqtt_url(settings.mqtt_url)
    except (DemoError, ValueError) as exc:
        print(f"ioc demo: {exc}", file=sys.stderr)
        return 2
    if settings.log_level != "DEBUG":
        logging.getLogger().setLevel(logging.WARNING)  # the console is for the summary; services log to files
    demo = Demo(settings, opts)
    loop = asyncio.new_event_loop()
    main = loop.create_task(_main(demo))
    stopping: list[int] = []

    def on_signal(sig: int) -> None:
        stopping.append(sig)
        main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    code = 0
    try:
        loop.run_until_complete(main)
    except asyncio.CancelledError:
        print("\nioc demo: stopping ...", flush=True)
    except DemoError as exc:
        print(f"ioc demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    except FileNotFoundError as exc:
        print(f"ioc demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        # a second Ctrl-C while stopping is not an error: the stop goes on, children get killed
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        demo.stop()
        loop.close()
    if stopping:
        print("ioc demo: stopped", flush=True)
    return code
