"""``swdispatch dlq list | show | replay``: read the dead-letter topics and, once the cause is
fixed, re-publish dead letters to the topic and partition they came from.

A replayed message keeps its key and body and gets the header ``swd-replayed-from``
(``<dlq topic>:<partition>:<offset>``). The consumers' inboxes make a replay idempotent: a
consumer that had applied the event before counts it a duplicate. A message dead-lettered by
several consumers is one dead letter per consumer; it is replayed once. Dead letters with
reason ``oversized`` are never replayed: their body was cut at the size limit.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, generate_latest

from shared import topics
from shared.cli import command
from shared.dead_letters import DeadLetter, Selection, read
from shared.kafka import producer_options
from shared.settings import KafkaSettings, Settings
from shared.strings import CONTROL_CHARACTERS

# The CLI's own registry: `replay` prints it when done, in the Prometheus text format.
METRICS = CollectorRegistry()
REPLAYED = Counter(
    "swd_dead_letters_replayed_total",
    "Dead letters re-published to their original topic, by dead-letter topic and reason",
    ["topic", "reason"],
    registry=METRICS,
)
REPLAYED_FROM = topics.REPLAYED_FROM_HEADER
NOT_REPLAYABLE = {"oversized"}
BODY_LIMIT = 4000

_CONTROL = re.compile(rf"[{CONTROL_CHARACTERS}]")


def printable(text: str) -> str:
    """``text`` with every control character written as an escape: a dead letter's bytes
    cannot move the operator's cursor or change their terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


async def replay(
    kafka: KafkaSettings, letters: Sequence[DeadLetter], *, dry_run: bool
) -> tuple[list[DeadLetter], list[tuple[DeadLetter, str]]]:
    """Re-publish ``letters`` to where they came from; return the replayed ones and the
    skipped ones with why."""
    chosen: list[DeadLetter] = []
    skipped: list[tuple[DeadLetter, str]] = []
    seen: set[tuple[str, int, int]] = set()
    for letter in letters:
        original = letter.original
        if original is None:
            skipped.append((letter, "no original topic, partition and offset in its headers"))
        elif letter.reason in NOT_REPLAYABLE:
            skipped.append((letter, f"reason {letter.reason}: the body was cut"))
        elif original in seen:
            skipped.append((letter, "the same message, dead-lettered by another consumer"))
        else:
            seen.add(original)
            chosen.append(letter)
    if dry_run or not chosen:
        return chosen, skipped
    producer = AIOKafkaProducer(
        **producer_options(kafka),
        client_id=f"{kafka.client_id}-dlq",
        max_request_size=2 * kafka.max_event_bytes,
    )
    await producer.start()
    try:
        for letter in chosen:
            assert letter.original is not None
            topic, partition, _ = letter.original
            origin = f"{letter.topic}:{letter.partition}:{letter.offset}"
            await producer.send_and_wait(
                topic,
                letter.value,
                key=letter.key,
                partition=partition,
                headers=[(REPLAYED_FROM, origin.encode())],
            )
            REPLAYED.labels(letter.topic, letter.reason).inc()
    finally:
        await producer.stop()
    return chosen, skipped


def _line(letter: DeadLetter) -> str:
    h = letter.headers
    original = letter.original
    where = f"{original[0]}:{original[1]}@{original[2]}" if original else "?"
    return printable(
        f"{letter.topic}:{letter.partition}@{letter.offset}  {letter.at}  "
        f"reason={letter.reason} detail={h.get('swd-dlq-detail', '')} "
        f"consumer={h.get('swd-dlq-consumer', '')} original={where}"
    )


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        topics=(args.topic,) if args.topic else topics.ALL,
        reason=args.reason,
        partition=args.partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
    )


def _list(args: argparse.Namespace) -> None:
    letters = asyncio.run(read(Settings().kafka, _selection(args)))
    for letter in letters:
        print(_line(letter))
    print(f"{len(letters)} dead letters")


def _show(args: argparse.Namespace) -> None:
    selection = Selection(
        topics=(args.topic,),
        partition=args.partition,
        from_offset=args.offset,
        to_offset=args.offset,
    )
    found = asyncio.run(read(Settings().kafka, selection))
    if not found:
        raise SystemExit(f"no dead letter of {args.topic} at {args.partition}@{args.offset}")
    letter = found[0]
    print(_line(letter))
    for name, value in sorted(letter.headers.items()):
        print(printable(f"  {name}: {value}"))
    key = letter.key.decode("utf-8", "backslashreplace") if letter.key is not None else None
    print(printable(f"  key: {key}"))
    body = letter.value[: args.max_bytes].decode("utf-8", "backslashreplace")
    with_more = f" (first {args.max_bytes} of {len(letter.value)} bytes)"
    print(f"body{with_more if len(letter.value) > args.max_bytes else ''}:")
    print(printable(body))


def _replay(args: argparse.Namespace) -> None:
    kafka = Settings().kafka
    letters = asyncio.run(read(kafka, _selection(args)))
    chosen, skipped = asyncio.run(replay(kafka, letters, dry_run=args.dry_run))
    verb = "would replay" if args.dry_run else "replayed"
    for letter in chosen:
        print(f"{verb} {_line(letter)}")
    for letter, why in skipped:
        print(f"skipped {_line(letter)}: {why}")
    print(f"{verb} {len(chosen)}, skipped {len(skipped)}")
    if not args.dry_run:
        print(generate_latest(METRICS).decode(), end="")


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", choices=topics.ALL, help="the original topic (default: all)")
    parser.add_argument("--reason", help="only dead letters with this reason")
    parser.add_argument("--partition", type=int, help="only this partition of the DLQ topic")
    parser.add_argument("--from-offset", type=int, default=0, help="first DLQ offset")
    parser.add_argument("--to-offset", type=int, help="last DLQ offset (inclusive)")


def add_commands(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="list, show and replay dead letters").add_subparsers(
        dest="action", required=True
    )
    _selection_arguments(command(dlq, "list", _list, "list dead letters"))
    show = command(dlq, "show", _show, "one dead letter: headers, key and body")
    show.add_argument("--topic", choices=topics.ALL, required=True, help="the original topic")
    show.add_argument("--partition", type=int, default=0, help="of the DLQ topic")
    show.add_argument("--offset", type=int, required=True, help="in the DLQ topic")
    show.add_argument("--max-bytes", type=int, default=BODY_LIMIT, help="of the body to print")
    replay_parser = command(
        dlq, "replay", _replay, "re-publish dead letters to their original topic and partition"
    )
    _selection_arguments(replay_parser)
    replay_parser.add_argument("--dry-run", action="store_true", help="print, publish nothing")
