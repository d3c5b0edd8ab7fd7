"""What can be validated of deploy/ without a container engine or a cluster: Prometheus config
and rules (promtool, including the alerts' unit tests), the compose file (docker-compose
config), the Kubernetes manifests and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.debian import debian_tool

ROOT = Path(__file__).resolve().parents[3]
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
    "swd_satisfaction_rate",
    "swd_satisfaction_target",
    "swd_return_visits_answered",
}


# What compose requires to be set (it has no default secrets).
COMPOSE_SECRETS = {
    "POSTGRES_PASSWORD": "owner-secret",
    "DISPATCH_CENTER_DB_PASSWORD": "center-secret",
    "STATION_WORKER_DB_PASSWORD": "worker-secret",
    "AUDIT_DB_PASSWORD": "audit-secret",
    "AUDIT_HMAC_KEY": "k" * 32,
    "CALLBACK_SECRET_KEY": "MGcf9xZ3RRj0wXYGPcRCMSS5Yven5SrFwdXh--zLhYg=",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
}
# Egress the dispatch center's callbacks must never reach: the cluster, private, link-local.
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}


def run(*command: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=DEPLOY, check=False, env=env
    )
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
    assert "11 rules found" in run(promtool, "check", "rules", "prometheus/alerts.yml")


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
        "SatisfactionBelowTarget",
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


def test_the_audits_satisfaction_metrics_the_alert_uses_are_exported() -> None:
    from services.audit.jobs import satisfaction_families

    rows = [{"station": "st-a", "answered": 4, "satisfied": 3}]
    families = {f.name: f for f in satisfaction_families(rows, 0.9)}
    rules = [r for g in load_all(PROMETHEUS / "alerts.yml")[0]["groups"] for r in g["rules"]]
    (rule,) = [r for r in rules if r.get("alert") == "SatisfactionBelowTarget"]
    assert metric_names(rule["expr"]) <= set(families)
    assert [(s.labels, s.value) for s in families["swd_satisfaction_rate"].samples] == [
        ({"station": "st-a"}, 0.75)
    ]
    assert families["swd_satisfaction_target"].samples[0].value == 0.9


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    docker_compose = debian_tool("docker-compose", "docker-compose")
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    return subprocess.run(
        [docker_compose, "-f", "docker-compose.yml", "config"],
        capture_output=True,
        text=True,
        cwd=DEPLOY,
        check=False,
        env=clean | env,
    )


def test_compose_file_is_valid_and_runs_what_swdispatch_up_runs() -> None:
    done = compose_config(COMPOSE_SECRETS)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
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


def test_compose_has_no_default_secrets() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{[A-Z_]*(PASSWORD|KEY|SECRET)[A-Z_]*:-", text)
    for name in COMPOSE_SECRETS:
        done = compose_config({k: v for k, v in COMPOSE_SECRETS.items() if k != name})
        assert done.returncode != 0, f"compose runs without {name}"
        assert name in done.stderr


def test_compose_publishes_ports_on_loopback_only_and_each_service_has_its_own_role() -> None:
    done = compose_config(COMPOSE_SECRETS)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    published = [(name, p) for name, s in services.items() for p in s.get("ports", [])]
    assert published
    for name, port in published:
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        assert host_ip == "127.0.0.1", (name, port)
    owner = f"postgresql://swdispatch:{COMPOSE_SECRETS['POSTGRES_PASSWORD']}@"
    roles = {
        "dispatch-center": "swd_dispatch_center:center-secret@",
        "station-worker-1": "swd_station_worker:worker-secret@",
        "station-worker-2": "swd_station_worker:worker-secret@",
        "audit": "swd_audit:audit-secret@",
    }
    for name, role in roles.items():
        url = services[name]["environment"]["SWD_DATABASE_URL"]
        assert url.startswith(f"postgresql://{role}"), name
    # Only the init container connects as the owner (a superuser in the postgres image).
    assert services["init"]["environment"]["SWD_DATABASE_URL"].startswith(owner)
    for name, service in services.items():
        if name != "init":
            assert owner not in str(service.get("environment", {})), name
    audit = services["audit"]["environment"]
    assert audit["SWD_AUDIT_HMAC_KEY"] == COMPOSE_SECRETS["AUDIT_HMAC_KEY"]
    assert audit["SWD_AUDIT_CHECKPOINT_FILE"]
    assert "SWD_AUDIT_HMAC_KEY" not in services["dispatch-center"]["environment"]


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
        database = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container["env"]
            if e["name"] == "SWD_DATABASE_URL"
        }
        assert database == {f"swdispatch-{name}-database"}, "each service its own role"
        assert "swdispatch-kafka" in secrets
        assert "swdispatch-database-owner" not in secrets
        assert container["envFrom"] == [{"configMapRef": {"name": "swdispatch"}}]
    assert "replicas" not in deployments["station-worker"]["spec"], "the HPA owns it"

    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "station-worker"
    assert hpa["spec"]["maxReplicas"] <= int(config["SWD_KAFKA_TOPIC_PARTITIONS"])
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert services == set(deployments)
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (init,) = _containers(job)
    assert "swdispatch topics && swdispatch migrate" in " ".join(init["command"])
    assert {"cpu", "memory"} <= set(init["resources"]["limits"])
    assert {"cpu", "memory"} <= set(init["resources"]["requests"])
    init_secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in init["env"] if "valueFrom" in e}
    assert "swdispatch-database-owner" in init_secrets
    audit_env = {e["name"] for e in _containers(deployments["audit"])[0]["env"]}
    assert {"SWD_AUDIT_HMAC_KEY", "SWD_AUDIT_CHECKPOINT_FILE"} <= audit_env


def _egress_ports(policy: dict[str, Any]) -> set[int | str]:
    return {p["port"] for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])}


def test_network_policies_deny_by_default_and_only_the_center_reaches_out() -> None:
    docs = [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in load_all(path)]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "a default-deny policy for every pod of the namespace"
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }

    def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
        wanted = policy["spec"]["podSelector"].get("matchLabels", {})
        return wanted.items() <= labels.items()

    infrastructure = {53, 5432, 9093}
    for name, labels in pods.items():
        ports = set().union(*(_egress_ports(p) for p in policies if selects(p, labels)))
        assert infrastructure <= ports, name
        if name == "dispatch-center":
            assert {443, 80} <= ports
        else:
            assert ports == infrastructure, f"{name} may reach only DNS, PostgreSQL and Kafka"
    wide = [p for p in policies if _egress_ports(p) & {80, 443}]
    assert [p["spec"]["podSelector"] for p in wide] == [
        {"matchLabels": {"app.kubernetes.io/name": "dispatch-center"}}
    ]
    for rule in wide[0]["spec"]["egress"]:
        for peer in rule["to"]:
            if peer["ipBlock"]["cidr"] == "0.0.0.0/0":
                assert set(peer["ipBlock"]["except"]) >= PRIVATE_RANGES
    ingress = [p for p in policies if p["spec"].get("ingress")]
    assert all(
        {port["port"] for rule in p["spec"]["ingress"] for port in rule["ports"]} == {"http"}
        for p in ingress
    )


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
        "swd_satisfaction_rate",
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
