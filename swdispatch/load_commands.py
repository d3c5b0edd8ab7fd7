"""``swdispatch simulate`` and ``swdispatch bench``: each brings up its own throwaway stack
(embedded PostgreSQL, Tansu, the three services on free ports) seeded with a synthetic county."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from shared.cli import command
from swdispatch.county import County

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop when it is installed: the client then takes less of
    the CPU that the services under test share with it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _county_options(parser: argparse.ArgumentParser, townships: int) -> None:
    parser.add_argument("--townships", type=int, default=townships, help="one station each")
    parser.add_argument("--communities", type=int, default=8, help="per township")
    parser.add_argument("--workers", type=int, default=4, help="social workers per station")


def _county(args: argparse.Namespace) -> County:
    return County(args.townships, args.communities, args.workers)


def _env(args: argparse.Namespace) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in args.env)


def _env_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", action="append", default=[], metavar="SWD_X=V", help="a service setting"
    )


def simulate(args: argparse.Namespace) -> None:
    from swdispatch import simulate as sim
    from swdispatch.sandbox import sandbox

    behaviour = sim.StaffBehaviour(
        accept_delay_s=args.accept_delay,
        reject_share=args.reject_share,
        work_delay_s=args.work_delay,
    )
    print("starting a stack for the simulation ...", flush=True)
    with sandbox(_county(args), service_env=_env(args)) as box:
        summary = _run(
            sim.run(
                box.urls,
                box.credentials,
                box.county,
                behaviour,
                rate_per_s=args.rate,
                duration_s=args.duration,
            )
        )
    sim.print_summary(summary)
    if summary["accepted_missing_from_audit"]:
        sys.exit(1)


def bench(args: argparse.Namespace) -> None:
    from swdispatch import bench as b
    from swdispatch.sandbox import sandbox

    overrides: dict[str, Any] = {"step_s": args.step_seconds, "lifecycle_rate": args.lifecycle_rate}
    if args.rates:
        overrides["rates"] = tuple(float(r) for r in args.rates.split(","))
    cfg = b.BenchConfig(**overrides)
    env = _env(args)
    print("starting a stack for the benchmark ...", flush=True)
    with sandbox(_county(args), service_env=env) as box:
        result = _run(b.run(box, cfg))
    result["service_env"] = env
    b.write_report(result, args.output)


def add_commands(sub: Any) -> None:
    p = command(sub, "simulate", simulate, "a synthetic county's traffic with simulated staff")
    _county_options(p, townships=6)
    p.add_argument("--rate", type=float, default=5.0, help="requests per second")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of intake")
    p.add_argument("--accept-delay", type=float, default=2.0, help="mean seconds to act")
    p.add_argument("--reject-share", type=float, default=0.05)
    p.add_argument("--work-delay", type=float, default=1.0, help="mean seconds per work step")
    _env_option(p)

    p = command(sub, "bench", bench, "measure the ceilings and the pipeline; table and JSON")
    _county_options(p, townships=10)
    p.add_argument("--rates", default="", help="intake steps, e.g. 50,100,200 (default: to 800)")
    p.add_argument("--step-seconds", type=float, default=10.0)
    p.add_argument("--lifecycle-rate", type=float, default=50.0)
    _env_option(p)
    p.add_argument("--output", type=Path, default=Path(".swdispatch/bench-result.json"))
