"""``swdispatch``: run the pipeline, one service, or an administrative task."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from services.audit import commands as audit_commands
from services.dispatch_center import commands as center_commands
from services.station_worker import commands as station_commands
from shared.cli import command
from shared.settings import Settings
from swdispatch import dlq, load_commands
from swdispatch.stack import SERVICES, LocalStack, Ports, migrate_all, role_passwords_from_env
from swdispatch.supervisor import Supervisor

STATE_DIR = Path(".swdispatch")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def run_service(service: str) -> None:
    import uvicorn

    from services.audit.app import create_app as audit_app
    from services.dispatch_center.app import create_app as center_app
    from services.station_worker.app import create_app as station_app

    settings = Settings()
    _configure_logging(settings.log_level)
    factories = {"dispatch_center": center_app, "station_worker": station_app, "audit": audit_app}
    port = getattr(settings, f"{service}_port")
    uvicorn.run(
        factories[service](),
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
    )


def _runs(service: str) -> Callable[[argparse.Namespace], None]:
    return lambda _: run_service(service)


def up(args: argparse.Namespace) -> None:
    from swdispatch import demo

    _configure_logging("WARNING")
    # SIGTERM stops the stack as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    settings = Settings()
    service_ports = {service: getattr(settings, f"{service}_port") for service in SERVICES}
    ports = Ports(postgres=args.postgres_port, kafka=args.kafka_port, **service_ports)
    stack = LocalStack(root=STATE_DIR.resolve(), ports=ports)
    supervisor = Supervisor(stack)
    print("starting embedded PostgreSQL and the Tansu broker ...", flush=True)
    stack.start_infra()
    try:
        credentials = asyncio.run(stack.prepare())
        demo.write_credentials(STATE_DIR / "demo-credentials.json", credentials)
        for service in SERVICES:
            stack.start_service(service)
        stack.wait_ready()
        supervisor.start()
        print(f"\nPostgreSQL  {stack.database_url}\nKafka       {stack.kafka_bootstrap}")
        for service, url in stack.urls.items():
            print(f"{service:16} {url}   docs {url}/docs   metrics {url}/metrics")
        print(
            f"\nstation dashboard: {stack.urls['station_worker']}/dashboard (sign in with a"
            " station's manager_token from the demo credentials)"
        )
        print(f"demo credentials: {STATE_DIR / 'demo-credentials.json'}")
        print(f"service logs:     {stack.logs}/\n")
        if args.no_demo:
            print("running; Ctrl-C stops everything", flush=True)
            while True:
                time.sleep(3600)
        else:
            print(
                f"demo traffic: one request every {args.interval}s; Ctrl-C stops everything\n",
                flush=True,
            )
            asyncio.run(
                demo.run_traffic(
                    stack.urls, credentials, interval_s=args.interval, count=args.count
                )
            )
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM (make and the shell may both pass one on) must not cut the
        # shutdown short and leave PostgreSQL and the broker running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping ...", flush=True)
        supervisor.stop()
        stack.stop()
        print("stopped", flush=True)


def migrate(args: argparse.Namespace) -> None:
    settings = Settings()
    owner_url = settings.migration_database_url or settings.database_url
    applied = asyncio.run(migrate_all(owner_url, role_passwords_from_env()))
    print(json.dumps(applied, indent=2))


def create_topics(args: argparse.Namespace) -> None:
    from shared.kafka import create_topics

    print("created:", asyncio.run(create_topics(Settings().kafka)) or "nothing missing")


def asyncapi(args: argparse.Namespace) -> None:
    from shared.asyncapi import document

    print(json.dumps(document(Settings().kafka.bootstrap), indent=2))


def seed_demo(args: argparse.Namespace) -> None:
    from services.dispatch_center.settings import CenterSettings
    from swdispatch import demo

    center = CenterSettings()
    credentials = asyncio.run(demo.seed(center.database_url, center.callback_fernet_key()))
    demo.write_credentials(args.credentials, credentials)
    print(f"demo credentials written to {args.credentials}")


def demo_traffic(args: argparse.Namespace) -> None:
    from swdispatch import demo

    urls = {s: getattr(args, f"{s}_url") for s in SERVICES}
    credentials = json.loads(args.credentials.read_text())
    asyncio.run(demo.run_traffic(urls, credentials, interval_s=args.interval, count=args.count))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="swdispatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_up = command(sub, "up", up, "run the whole pipeline on the embedded stack with demo traffic")
    p_up.add_argument("--interval", type=float, default=3.0, help="seconds between demo requests")
    p_up.add_argument("--count", type=int, default=None, help="stop after this many requests")
    p_up.add_argument("--no-demo", action="store_true", help="no demo traffic")
    p_up.add_argument("--postgres-port", type=int, default=5433)
    p_up.add_argument("--kafka-port", type=int, default=9092)

    command(sub, "migrate", migrate, "apply every service's schema migrations")
    command(sub, "topics", create_topics, "create the Kafka topics and their dead-letter topics")
    command(sub, "asyncapi", asyncapi, "print the event contracts as an AsyncAPI document")
    p_seed = command(
        sub, "seed-demo", seed_demo, "write the demo county and print demo credentials"
    )
    p_seed.add_argument("--credentials", type=Path, default=STATE_DIR / "demo-credentials.json")
    for service in SERVICES:
        command(sub, service.replace("_", "-"), _runs(service), f"run the {service} service alone")
    p_traffic = command(
        sub, "demo-traffic", demo_traffic, "submit demo requests to running services, as `up` does"
    )
    p_traffic.add_argument("--credentials", type=Path, default=STATE_DIR / "demo-credentials.json")
    p_traffic.add_argument("--interval", type=float, default=3.0)
    p_traffic.add_argument("--count", type=int, default=None)
    defaults = Settings()
    for service in SERVICES:
        port = getattr(defaults, f"{service}_port")
        p_traffic.add_argument(
            f"--{service.replace('_', '-')}-url", default=f"http://127.0.0.1:{port}"
        )

    for module in (center_commands, station_commands, audit_commands, load_commands, dlq):
        module.add_commands(sub)

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
