"""`s3e-fleet`: one archive of every device's images, searchable in one place.

s3e-fleet run --config fleet.toml          ingest, reconciler, maintenance and search
s3e-fleet ingest|serve|maintain|reconcile --config fleet.toml
s3e-fleet reanalyze --bundle chest-float16 --config fleet.toml [--address ray://head:10001]
s3e-fleet check-config --config fleet.toml
s3e-fleet device add NAME --password-file mosquitto.passwd --acl-file mosquitto.acl
s3e-fleet device fleet --password-file mosquitto.passwd --acl-file mosquitto.acl
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.analysis.bundle import BundleError, load_bundle
from edge.config import ConfigError
from edge.logs import setup_logging
from fleet.archive import Archive, ArchiveError, check_conditional_put, vector_dims
from fleet.config import FleetConfig, load_config

if TYPE_CHECKING:
    from edge.api.auth import Auth
    from edge.api.server import HttpServer

log = logging.getLogger("s3e.fleet")
EXIT_CONFIG, EXIT_FAILED = 2, 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3e-fleet",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = p.add_subparsers(dest="command", required=True)
    commands = (
        ("run", "ingest, reconciler, maintenance and search in one process"),
        ("ingest", "an ingest worker on the shared MQTT subscription"),
        ("serve", "the search API and page over the archive"),
        ("maintain", "build missing indexes, compact, refresh indexes (once)"),
        ("reconcile", "merge the sidecars MQTT missed (one pass)"),
        ("check-config", "validate the config and exit"),
        ("reanalyze", "the whole archive through another bundle (Ray Data)"),
    )
    for name, what in commands:
        s = sub.add_parser(name, help=what, description=what)
        s.add_argument("--config", "-c", type=Path, help="the fleet's TOML file")
        if name == "reanalyze":
            s.add_argument("--bundle", required=True, help="shipped bundle name or folder")
            s.add_argument("--address", help="a Ray cluster (ray://host:10001); default: local")
            s.add_argument("--workers", type=int, default=2, help="model actors")
    _device_parser(sub)
    return p


def _device_parser(sub: Any) -> None:
    """`device add NAME` and `device fleet`: broker users, so a device's topics are its own."""
    what = "broker users whose topics are their own (mosquitto password and ACL files)"
    dev = sub.add_parser("device", help=what, description=what)
    actions = dev.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add",
        help="a device's user (its device_id): it writes and reads only under its own name",
        description="a device's broker user, named as its device_id, with a new password",
    )
    add.add_argument("name", help="the device's device_id")
    add.add_argument(
        "--homeassistant",
        nargs="?",
        const="homeassistant",
        default="",
        metavar="PREFIX",
        help="also let devices write their Home Assistant discovery configs under PREFIX "
        "(the device's mqtt.homeassistant_prefix; default homeassistant)",
    )
    fleet = actions.add_parser(
        "fleet",
        help="the fleet's own user (mqtt.username): reads every device's events",
        description="the fleet's broker user, named by mqtt.username, with a new password",
    )
    for s in (add, fleet):
        s.add_argument("--config", "-c", type=Path, help="the fleet's TOML file")
        s.add_argument(
            "--password-file",
            type=Path,
            required=True,
            help="mosquitto's password_file (made if missing, by mosquitto_passwd)",
        )
        s.add_argument(
            "--acl-file",
            type=Path,
            required=True,
            help="mosquitto's acl_file (made if missing; gets the lines it lacks)",
        )
        s.add_argument(
            "--secret-file",
            type=Path,
            help="write the password to this file (owner only) instead of printing it",
        )


def open_archive(cfg: FleetConfig) -> tuple[Archive, Any]:
    """The fleet bundle and the archive, after checking the store can hold a Lance table."""
    bundle = load_bundle(cfg.archive.bundle)
    check_conditional_put(cfg.s3, cfg.archive.uri)
    return Archive.current(cfg, vector_dims(bundle)), bundle


def _loop(stop: threading.Event, every: float, job: Callable[[], Any], what: str) -> None:
    while not stop.is_set():
        try:
            job()
        except Exception as e:  # one failed pass is logged; the next may succeed
            log.error("%s failed: %s", what, e)
        stop.wait(every)


def _serve(cfg: FleetConfig, archive: Archive, bundle: Any, auth: Auth) -> HttpServer:
    """The search app behind the device's guard (`auth`: its token, sessions and throttle),
    started on the device's HTTP server (deadlines and caps on connections); a port another
    program holds is a `RuntimeError` naming it."""
    from edge.api.auth import exposure_warning
    from edge.api.server import HttpServer
    from fleet.app import create_app
    from fleet.search import FleetSearch

    server = HttpServer(create_app(cfg, FleetSearch(archive, bundle), auth), cfg.http, port_flag="")
    port = server.start()
    log.info("fleet search on http://%s:%d/", cfg.http.host, port)
    warning = exposure_warning(
        cfg.http, auth.token_required, "search every device's images and open their originals"
    )
    if warning:
        log.warning("%s", warning)
    return server


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log_format)
    if args.command == "check-config":
        print(f"{args.config or '(defaults)'}: ok")
        return 0
    if args.command == "device":
        return _device(args, cfg)
    try:
        if args.command == "reanalyze":
            from fleet.reanalyze import reanalyze

            check_conditional_put(cfg.s3, cfg.archive.uri)
            log.info("done: %s", reanalyze(cfg, args.bundle, args.address, args.workers))
            return 0
        auth = _auth(cfg) if args.command in ("run", "serve") else None
        archive, bundle = open_archive(cfg)
        return _command(args.command, cfg, archive, bundle, auth)
    except (ArchiveError, BundleError) as e:
        log.error("%s", e)
        return EXIT_FAILED
    except ConfigError as e:
        log.error("%s", e)
        return EXIT_CONFIG


def _auth(cfg: FleetConfig) -> Auth:
    """The guard's token (read from `http.token_file` now, before the archive opens: a file
    that cannot be read stops the start at once, naming the key), sessions and throttle."""
    from edge.api.auth import Auth, TokenFileError

    try:
        return Auth(cfg.http)
    except TokenFileError as e:
        raise ConfigError(str(e)) from None


def _device(args: argparse.Namespace, cfg: FleetConfig) -> int:
    """A broker user and its ACL lines; the password printed, or written to --secret-file."""
    from fleet import broker

    prefix, fleet_user = cfg.mqtt.topic_prefix, cfg.mqtt.username or "s3e-fleet"
    files = (args.password_file, args.acl_file)
    try:
        if args.action == "add":
            password = broker.add_device(
                args.name, *files, prefix, fleet_user, args.homeassistant, args.secret_file
            )
            user = args.name
        else:
            password = broker.add_fleet(fleet_user, *files, prefix, args.secret_file)
            user = fleet_user
    except (ValueError, RuntimeError, OSError) as e:
        log.error("%s", e)
        return EXIT_FAILED
    if args.secret_file is None:
        print(password)
    log.info(
        "broker user %s written to %s and %s; reload mosquitto (SIGHUP) to apply",
        user,
        *files,
    )
    return 0


def _command(
    command: str, cfg: FleetConfig, archive: Archive, bundle: Any, auth: Auth | None
) -> int:
    """`auth`: the HTTP guard's token and sessions, for the commands that serve; else None."""
    from cloud_sync.client import make_client
    from fleet.ingest import Ingestor
    from fleet.maintain import maintain
    from fleet.reconcile import reconcile
    from fleet.trust import Refusals

    refusals = Refusals(logging.getLogger("s3e.fleet.reconcile"))  # bursts span passes

    def reconcile_once() -> int:
        s3 = cfg.s3
        return reconcile(
            Archive.current(cfg),
            make_client(s3),
            s3.bucket,
            s3.prefix,
            cfg.reconcile.days,
            refusals,
        )

    if command == "maintain":
        maintain(archive)
        return 0
    if command == "reconcile":
        log.info("merged %d sidecars", reconcile_once())
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    server: HttpServer | None = None
    if auth is not None:
        try:
            server = _serve(cfg, archive, bundle, auth)
        except RuntimeError as e:  # the port is taken
            log.error("%s", e)
            return EXIT_FAILED
    threads: list[threading.Thread] = []
    ingestor = None
    if command in ("run", "ingest"):
        ingestor = Ingestor(cfg, archive)
        ingestor.start()
        threads.append(threading.Thread(target=ingestor.run, name="ingest", daemon=True))
    if command == "run":
        for every, job, what in (
            (cfg.reconcile.interval_s, reconcile_once, "reconcile"),
            (cfg.maintain.interval_s, lambda: maintain(archive), "maintenance"),
        ):
            threads.append(
                threading.Thread(
                    target=_loop, args=(stop, every, job, what), name=what, daemon=True
                )
            )
    for t in threads:
        t.start()
    code = 0
    while not stop.wait(1.0):
        if server is not None and not server.thread.is_alive():
            log.error("the HTTP server stopped on its own")
            code = EXIT_FAILED
            break
    stop.set()  # the loops too, when the server stopped
    if ingestor is not None:
        ingestor.stop()
    for t in threads:
        t.join(10)
    if server is not None:
        server.stop()
    return code


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
