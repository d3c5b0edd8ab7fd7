"""Kafka helpers: the broker built from settings, and topic creation."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import REGISTRY

from shared import topics
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)


def _security(kafka: KafkaSettings) -> BaseSecurity | None:
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = (
        ssl.create_default_context(cafile=kafka.ssl_cafile)
        if "SSL" in (kafka.security_protocol)
        else None
    )
    if kafka.sasl_mechanism is None:
        return BaseSecurity(ssl_context=context)
    sasl = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return sasl[kafka.sasl_mechanism](
        username=kafka.sasl_username or "",
        password=kafka.sasl_password or "",
        ssl_context=context,
    )


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection settings for plain aiokafka clients (admin, offset readers)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if "SSL" in kafka.security_protocol:
        options["ssl_context"] = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.sasl_mechanism is not None:
        options |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": kafka.sasl_password,
        }
    return options


def producer_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Settings for a plain aiokafka producer, the same as the broker's own."""
    return {
        **client_options(kafka),
        "acks": "all" if kafka.acks == "all" else int(kafka.acks),
        "enable_idempotence": kafka.enable_idempotence,
        "linger_ms": kafka.linger_ms,
    }


def create_broker(kafka: KafkaSettings, *, service: str, graceful_timeout_s: float) -> KafkaBroker:
    return KafkaBroker(
        kafka.bootstrap,
        client_id=f"{kafka.client_id}-{service}",
        request_timeout_ms=kafka.request_timeout_ms,
        # Topics are created with their partition counts by `swdispatch topics`; a topic made
        # on the fly (one partition) would break the key-to-partition mapping.
        allow_auto_create_topics=False,
        acks="all" if kafka.acks == "all" else int(kafka.acks),
        enable_idempotence=kafka.enable_idempotence,
        linger_ms=kafka.linger_ms,
        security=_security(kafka),
        graceful_timeout=graceful_timeout_s,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)],
        logger=logging.getLogger(f"swdispatch.{service}.kafka"),
        # faststream logs every message at the broker's level; keep that out of INFO.
        log_level=logging.DEBUG,
        description=f"swdispatch {service}",
    )


def consumer_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka consumer settings every subscriber uses."""
    return {
        # Range gives partition p of every topic a group reads to the same member; with the
        # order id as key everywhere, one order's events from all topics meet in one consumer.
        "partition_assignment_strategy": (RangePartitionAssignor,),
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
    }


async def create_topics(kafka: KafkaSettings) -> list[str]:
    """Create every topic and its dead-letter topic; return the ones that were missing."""
    admin = AIOKafkaAdminClient(client_id=f"{kafka.client_id}-admin", **client_options(kafka))
    configs = (
        {"min.insync.replicas": str(kafka.topic_min_insync_replicas)}
        if kafka.topic_min_insync_replicas is not None
        else {}
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for topic in topics.ALL for t in (topic, topics.dead_letter(topic))]
        missing = [t for t in wanted if t not in existing]
        for name in missing:
            partitions = kafka.topic_partitions if not name.endswith(".dlq") else 1
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name, partitions, kafka.topic_replication_factor, topic_configs=configs
                        )
                    ]
                )
            except TopicAlreadyExistsError:
                log.info("topic %s was created meanwhile", name)
        return missing
    finally:
        await admin.close()
