"""What can be validated of deploy/ without a container engine or a cluster: Prometheus config
and rules (promtool, including the alerts' unit tests), the compose file (docker-compose
config), the Kubernetes manifests and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.debian import debian_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"

# Metrics the services export (agreed names across the team; see README "Operations").
KNOWN_METRICS = {
    "swd_lifecycle_events_total",
    "swd_stage_duration_seconds",
    "swd_sla_breaches_total",
    "swd_open_orders",
    "swd_overdue_open_orders",
    "swd_oldest_open_order_age_seconds",
    "swd_status_callback_attempts_total",
    "swd_consumer_lag_messages",
    "swd_outbox_unsent_events",
    "swd_outbox_oldest_unsent_age_seconds",
    "swd_dead_letter_topic_messages",
    "swd_dead_letter_events_total",
    "swd_consumer_events_total",
    "swd_outbox_published_events_total",
    "swd_http_requests_total",
    "swd_http_request_duration_seconds",
}


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, cwd=DEPLOY, check=False)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def metric_names(promql: str) -> set[str]:
    names = set(re.findall(r"\bswd_[a-z_]+", promql))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_tool("promtool", "prometheus")


def test_prometheus_config_and_rules_are_valid(promtool: str) -> None:
    run(promtool, "check", "config", "prometheus/prometheus.yml")
    assert "10 rules found" in run(promtool, "check", "rules", "prometheus/alerts.yml")


def test_alert_unit_tests_pass(promtool: str) -> None:
    run(promtool, "test", "rules", "prometheus/alerts.test.yml")


def test_every_alert_has_guidance_and_a_unit_test() -> None:
    rules = [r for g in load_all(PROMETHEUS / "alerts.yml")[0]["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert set(alerts) == {
        "SlaBreachesRising",
        "OverdueOpenOrders",
        "OldestOpenOrderTooOld",
        "ConsumerLagGrowing",
        "OutboxBacklogStale",
        "DeadLetterMessages",
        "ServiceDown",
        "InstanceDown",
        "StatusCallbacksFailing",
    }
    tests = load_all(PROMETHEUS / "alerts.test.yml")[0]["tests"]
    firing = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    quiet = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if not case["exp_alerts"]
    }
    assert firing == set(alerts), "every alert has a test where it fires"
    assert quiet == set(alerts), "every alert has a test where it stays quiet"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"], name
        assert len(rule["annotations"]["description"]) > 80, name
        assert metric_names(rule["expr"]) <= KNOWN_METRICS, name


def test_compose_file_is_valid_and_runs_what_swdispatch_up_runs() -> None:
    docker_compose = debian_tool("docker-compose", "docker-compose")
    config = yaml.safe_load(run(docker_compose, "-f", "docker-compose.yml", "config"))
    services = config["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    init = " ".join(services["init"]["command"])
    assert "swdispatch topics" in init
    assert "swdispatch migrate" in init
    assert "seed-demo" in init
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["dispatch-center"] == ["dispatch-center"]
    assert commands["station-worker-1"] == commands["station-worker-2"] == ["station-worker"]
    assert commands["audit"] == ["audit"]
    assert commands["demo"][0] == "demo-traffic"
    for name in ("dispatch-center", "station-worker-1", "station-worker-2", "audit"):
        service = services[name]
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        env = service["environment"]
        assert env["SWD_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
        assert env["SWD_KAFKA_ACKS"] == "all"
        grace = int(service["stop_grace_period"].rstrip("s"))
        assert grace > float(env["SWD_GRACEFUL_TIMEOUT_S"])
    assert "prometheus" in services
    assert "grafana" in services


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    return containers


def test_kubernetes_manifests() -> None:
    docs = [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in load_all(path)]
    for doc in docs:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
    kustomization = next(d for d in docs if d["kind"] == "Kustomization")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}

    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert config["SWD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["SWD_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["SWD_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert config["SWD_KAFKA_ACKS"] == "all"
    assert config["SWD_KAFKA_TOPIC_REPLICATION_FACTOR"] == "3"
    assert config["SWD_KAFKA_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    graceful_s = float(config["SWD_GRACEFUL_TIMEOUT_S"])

    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"dispatch-center", "station-worker", "audit"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = _containers(deployment)
        assert container["args"] == [name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        # HTTP drain and consumer drain (each up to the graceful timeout) plus preStop.
        pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pod["terminationGracePeriodSeconds"] > 2 * graceful_s + pre_stop
        secrets = {
            e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
        }
        if name == "dispatch-center":  # the key that encrypts the callback secrets
            secrets.remove("swdispatch-callbacks")
        assert secrets == {"swdispatch-database", "swdispatch-kafka"}
        assert container["envFrom"] == [{"configMapRef": {"name": "swdispatch"}}]
    assert "replicas" not in deployments["station-worker"]["spec"], "the HPA owns it"

    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "station-worker"
    assert hpa["spec"]["maxReplicas"] <= int(config["SWD_KAFKA_TOPIC_PARTITIONS"])
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert services == set(deployments)
    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert "swdispatch topics && swdispatch migrate" in " ".join(_containers(job)[0]["command"])


def test_kubernetes_scrape_config_names_jobs_after_services() -> None:
    # Debian's promtool is built without Kubernetes service discovery; check its shape here.
    (config,) = load_all(PROMETHEUS / "prometheus-k8s.yml")
    (scrape,) = config["scrape_configs"]
    assert {"target_label": "job"}.items() <= next(
        r for r in scrape["relabel_configs"] if r.get("target_label") == "job"
    ).items()
    assert config["rule_files"] == ["alerts.yml"]


def test_grafana_dashboard_uses_exported_metrics_and_covers_the_issue() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "swdispatch.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels}
    for title, expr in exprs.items():
        assert metric_names(expr) <= KNOWN_METRICS, title
        assert all(t["datasource"]["uid"] == "prometheus" for p in panels for t in p["targets"])
    used = set().union(*(metric_names(e) for e in exprs.values()))
    assert {
        "swd_lifecycle_events_total",  # intake rate
        "swd_stage_duration_seconds",  # p50 / p90 by urgency
        "swd_sla_breaches_total",
        "swd_open_orders",
        "swd_overdue_open_orders",
        "swd_consumer_lag_messages",
        "swd_outbox_unsent_events",
        "swd_dead_letter_topic_messages",
    } <= used
    quantiles = " ".join(e for t, e in exprs.items() if "Stage duration" in t)
    assert "histogram_quantile(0.5," in quantiles
    assert "histogram_quantile(0.9," in quantiles
    provider = load_all(DEPLOY / "grafana" / "provisioning" / "dashboards" / "swdispatch.yml")[0]
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_image_runs_as_a_non_root_user_and_the_command_chooses_the_service() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user
    assert not user[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["swdispatch"]' in dockerfile
