"""Production Kafka settings reach the plain aiokafka clients (topics admin, lag probe)."""

from __future__ import annotations

import ssl

from shared import topics
from shared.kafka import client_options
from shared.ops_metrics import GROUP_TOPICS
from shared.settings import KafkaSettings


def test_sasl_ssl_scram_reaches_the_admin_and_probe_clients() -> None:
    options = client_options(
        KafkaSettings(
            bootstrap="kafka-0:9093",
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="swdispatch",
            sasl_password="secret",
        )
    )
    assert options["bootstrap_servers"] == "kafka-0:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "swdispatch"
    assert options["sasl_plain_password"] == "secret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_plaintext_has_no_tls() -> None:
    options = client_options(KafkaSettings())
    assert options["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in options


def test_every_consumer_group_reads_known_topics() -> None:
    assert GROUP_TOPICS["swd.station_worker"] == (topics.CENTER_EVENTS,)
    assert GROUP_TOPICS["swd.audit"] == (
        topics.CENTER_EVENTS,
        topics.STATION_EVENTS,
        topics.AUDIT_EVENTS,
    )
    assert all(set(read) <= set(topics.ALL) for read in GROUP_TOPICS.values())
