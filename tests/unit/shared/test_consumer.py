"""The consumer wrapper's routing, on faststream's in-memory TestKafkaBroker."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import asyncpg
import pytest
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import topics
from shared.consumer import BATCH_FALLBACKS, HANDLER_ATTEMPTS, EventConsumer, PerEvent, subscribe
from shared.events import PAYLOAD_TYPES, SYSTEM, OrderReceived, UndecodableEvent, decode, new_event
from shared.settings import KafkaSettings
from tests.factories.strategies import hostile_bodies


class RecordingPool:
    """Stands in for asyncpg's pool: the DLQ paths must not touch the database at all."""

    def acquire(self) -> Any:
        raise AssertionError("the database was used")


@pytest.fixture
def broker() -> KafkaBroker:
    return KafkaBroker()


def _consumer(broker: KafkaBroker, handlers: dict[Any, Any], pool: Any = None) -> EventConsumer:
    """A consumer of the station topic, subscribed on ``broker``; by default its pool fails
    the test if it is used."""
    consumer = EventConsumer(
        name="unit",
        topics=(topics.STATION_EVENTS,),
        pool=pool or RecordingPool(),
        broker=broker,
        applier=PerEvent(handlers),
        max_event_bytes=1024,
    )
    subscribe(broker, consumer, KafkaSettings())
    return consumer


def _dead_letters(broker: KafkaBroker) -> list[KafkaMessage]:
    """The messages that will reach the station topic's dead-letter topic."""
    dead: list[KafkaMessage] = []

    async def undecoded(message: KafkaMessage) -> bytes:
        return message.body  # faststream's decoder would json.loads it, poison and all

    @broker.subscriber(topics.dead_letter(topics.STATION_EVENTS), decoder=undecoded)
    async def dlq(message: KafkaMessage) -> None:
        dead.append(message)

    return dead


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not_json"),
        (b'{"type": "order.teleported", "schema_version": 1}', "unknown_event_type"),
        (b'{"type": "order.received", "schema_version": 7}', "unsupported_schema_version"),
        (b"x" * 2048, "oversized"),
        (b"[" * 1000, "too_deep"),
        (b'{"type": "order.\\udfff", "schema_version": 1}', "not_json"),  # a lone surrogate
    ],
)
async def test_undecodable_messages_go_to_the_dead_letter_topic(
    broker: KafkaBroker, body: bytes, reason: str
) -> None:
    _consumer(broker, {})
    dead = _dead_letters(broker)

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(body, topics.STATION_EVENTS, key=b"k")
    assert len(dead) == 1
    assert dead[0].headers["swd-dlq-reason"] == reason
    assert dead[0].headers["swd-original-topic"] == topics.STATION_EVENTS
    assert dead[0].headers["swd-dlq-consumer"] == "unit"


async def test_events_without_a_handler_are_skipped_without_touching_the_database(
    broker: KafkaBroker,
) -> None:
    _consumer(broker, {})
    dead = _dead_letters(broker)

    event = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(event.to_json().encode(), topics.STATION_EVENTS, key=b"k")
    assert dead == []


class FlakyPool:
    """A pool whose first ``failures`` acquisitions fail as if the database were down."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        if self.acquired <= self.failures:
            raise ConnectionRefusedError("database down")
        return _FakeConnection()


class _FakeConnection:
    async def __aenter__(self) -> _FakeConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def transaction(self) -> _FakeConnection:
        return self

    async def fetch(self, query: str, consumer: str, event_ids: list[Any]) -> list[Any]:
        assert query.startswith("INSERT INTO inbox")
        return [{"event_id": e} for e in event_ids]


async def test_a_transient_database_failure_is_retried_not_skipped(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.consumer.MAX_BACKOFF_S", 0.01)
    applied: list[uuid.UUID] = []

    async def handler(conn: Any, event: Any) -> None:
        applied.append(event.event_id)

    pool = FlakyPool(failures=3)
    _consumer(broker, {OrderReceived: handler}, pool)
    dead = _dead_letters(broker)

    event = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(event.to_json().encode(), topics.STATION_EVENTS, key=b"k")
    assert pool.acquired == 4
    assert applied == [event.event_id]
    assert dead == []


class _TransactionalPool:
    """A pool whose transactions keep their inbox claims and effects only when they commit."""

    def __init__(self) -> None:
        self.inbox: set[Any] = set()
        self.effects: list[Any] = []
        self.transactions = 0

    def acquire(self) -> Any:
        return _Transaction(self)


class _Transaction:
    def __init__(self, pool: _TransactionalPool) -> None:
        self.pool = pool
        self.inbox: set[Any] = set()
        self.effects: list[Any] = []

    async def __aenter__(self) -> _Transaction:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.pool.transactions += 1
            self.pool.inbox |= self.inbox
            self.pool.effects += self.effects

    def transaction(self) -> Any:
        return contextlib.nullcontext()  # committed (or not) when the connection is released

    async def fetch(self, query: str, consumer: str, event_ids: list[Any]) -> list[Any]:
        claimed = []
        for event_id in event_ids:
            if event_id not in self.pool.inbox and event_id not in self.inbox:
                self.inbox.add(event_id)
                claimed.append({"event_id": event_id})
        return claimed


def _batch(*bodies: bytes) -> Any:
    from aiokafka import ConsumerRecord

    return tuple(
        ConsumerRecord(topics.STATION_EVENTS, 0, i, 0, 0, b"k", body, None, 1, len(body), [])
        for i, body in enumerate(bodies)
    )


async def test_a_batch_is_applied_in_one_transaction_once_per_event(broker: KafkaBroker) -> None:
    pool = _TransactionalPool()

    async def handler(conn: Any, event: Any) -> None:
        conn.effects.append(event.event_id)

    consumer = _consumer(broker, {OrderReceived: handler}, pool)
    events = [
        new_event(OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM)
        for _ in range(3)
    ]
    bodies = [e.to_json().encode() for e in events]
    await consumer.consume(_batch(*bodies, bodies[0]))  # the first one again: a duplicate
    assert pool.transactions == 1
    assert pool.effects == [e.event_id for e in events]


async def test_a_failing_event_rolls_its_batch_back_and_only_it_is_dead_lettered(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.consumer.asyncio.sleep", _no_sleep)
    pool = _TransactionalPool()
    poison = uuid.uuid4()

    async def handler(conn: Any, event: Any) -> None:
        if event.order_id == poison:
            raise ValueError("cannot apply")
        conn.effects.append(event.order_id)

    consumer = _consumer(broker, {OrderReceived: handler}, pool)
    orders = [uuid.uuid4(), poison, uuid.uuid4()]
    bodies = [
        new_event(OrderReceived(station_id="s", dispatch_no=1), order_id=o, actor=SYSTEM)
        .to_json()
        .encode()
        for o in orders
    ]
    dead = _dead_letters(broker)

    fallbacks = BATCH_FALLBACKS.labels("unit", "ValueError")
    before = fallbacks._value.get()
    async with TestKafkaBroker(broker):
        await consumer.consume(_batch(*bodies))
    assert fallbacks._value.get() == before + 1  # what operations see of it
    assert pool.effects == [orders[0], orders[2]]
    assert len(dead) == 1
    assert dead[0].headers["swd-dlq-reason"] == "handler_failed"
    assert dead[0].headers["swd-original-offset"] == "1"


async def _no_sleep(_: float) -> None:
    return None


class _RecordingBroker:
    """Keeps what the consumer publishes (dead letters), with its headers encoded as Kafka's
    client encodes them."""

    def __init__(self) -> None:
        self.dead_offsets: list[int] = []

    async def publish(self, body: bytes, topic: str, *, key: Any, headers: dict[str, str]) -> None:
        encoded = {name: value.encode() for name, value in headers.items()}
        self.dead_offsets.append(int(encoded["swd-original-offset"]))


async def _write_out(conn: Any, event: Any) -> None:
    """What the services' handlers do with an event: store it as JSON, publish it on."""
    conn.effects.append((json.dumps(event.redacted()).encode(), event.to_json().encode()))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(hostile_bodies, min_size=1, max_size=4))
async def test_whatever_a_batch_holds_each_message_is_applied_or_dead_lettered(
    monkeypatch: pytest.MonkeyPatch, bodies: list[bytes]
) -> None:
    monkeypatch.setattr("shared.consumer.asyncio.sleep", _no_sleep)
    pool = _TransactionalPool()
    broker = _RecordingBroker()
    consumer = EventConsumer(
        name="unit",
        topics=(topics.STATION_EVENTS,),
        pool=pool,  # type: ignore[arg-type]
        broker=broker,  # type: ignore[arg-type]
        applier=PerEvent(dict.fromkeys(PAYLOAD_TYPES.values(), _write_out)),
        max_event_bytes=2**20,
    )
    good = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    await consumer.consume(_batch(*bodies, good.to_json().encode()))

    assert good.event_id in pool.inbox
    assert len(broker.dead_offsets) == len(set(broker.dead_offsets))
    for offset, body in enumerate(bodies):
        try:
            applied = decode(body).event_id in pool.inbox
        except UndecodableEvent:
            applied = False
        assert applied != (offset in broker.dead_offsets), offset


def _postgres_error(sqlstate: str) -> asyncpg.PostgresError:
    error = asyncpg.PostgresError.new({"C": sqlstate, "M": "from the test"})
    assert isinstance(error, asyncpg.PostgresError)
    return error


@pytest.mark.parametrize(
    "sqlstate", ["53100", "53200", "25006", "57014", "55P03", "57P02", "40001", "08006"]
)
async def test_a_lasting_database_condition_is_retried_until_it_passes(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch, sqlstate: str
) -> None:
    monkeypatch.setattr("shared.consumer.asyncio.sleep", _no_sleep)
    pool = _TransactionalPool()
    failures = 0

    async def handler(conn: Any, event: Any) -> None:
        nonlocal failures
        if failures < 10:  # far more than the attempts a handler failure gets
            failures += 1
            raise _postgres_error(sqlstate)
        conn.effects.append(event.event_id)

    consumer = _consumer(broker, {OrderReceived: handler}, pool)
    dead = _dead_letters(broker)
    event = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    async with TestKafkaBroker(broker):
        await consumer.consume(_batch(event.to_json().encode()))
    assert pool.effects == [event.event_id]
    assert dead == []


@pytest.mark.parametrize(
    "error",
    [
        _postgres_error("23505"),
        _postgres_error("22P02"),
        asyncpg.DataError("invalid input for query argument $1: value out of int32 range"),
    ],
)
async def test_a_failure_about_the_event_itself_is_dead_lettered(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr("shared.consumer.asyncio.sleep", _no_sleep)
    pool = _TransactionalPool()
    calls = 0

    async def handler(conn: Any, event: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 100:  # retried as if the database were down: stop, let the test fail
            raise AssertionError
        raise error

    consumer = _consumer(broker, {OrderReceived: handler}, pool)
    dead = _dead_letters(broker)
    event = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    async with TestKafkaBroker(broker):
        await consumer.consume(_batch(event.to_json().encode()))
    assert calls == 1 + HANDLER_ATTEMPTS  # in its batch, then alone
    assert len(dead) == 1
    assert dead[0].headers["swd-dlq-reason"] == "handler_failed"
    assert pool.effects == []


async def test_a_re_driven_dead_letter_is_counted_by_the_consumer_that_takes_it(
    broker: KafkaBroker,
) -> None:
    from aiokafka import ConsumerRecord

    from shared.consumer import REDRIVEN

    consumer = _consumer(broker, {OrderReceived: _write_out}, _TransactionalPool())
    event = new_event(
        OrderReceived(station_id="s", dispatch_no=1), order_id=uuid.uuid4(), actor=SYSTEM
    )
    body = event.to_json().encode()
    replayed = [(topics.REPLAYED_FROM_HEADER, b"swd.station-events.dlq:0:7")]
    counted = REDRIVEN.labels(consumer.name, topics.STATION_EVENTS)
    before = counted._value.get()
    await consumer.consume(
        (
            ConsumerRecord(topics.STATION_EVENTS, 0, 0, 0, 0, b"k", body, None, 1, 1, []),
            ConsumerRecord(topics.STATION_EVENTS, 0, 1, 0, 0, b"k", body, None, 1, 1, replayed),
        )
    )
    assert counted._value.get() == before + 1
