"""The container deployment files, validated without a Docker engine: they parse, reference
files that exist, and wire the services the way the platform needs."""

from __future__ import annotations

import json
import re
import shutil

import yaml

from tests.platform import ROOT

DOCKER = ROOT / "docker"


def test_compose_wires_kafka_postgis_workers_and_gateway() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "postgis", "migrate", "worker", "gateway", "prometheus",
                             "grafana"}
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgis"]["image"].startswith("postgis/postgis:")
    worker, gateway = services["worker"], services["gateway"]
    assert worker["deploy"]["replicas"] >= 2
    assert "faust -A kilat worker" in " ".join(worker["command"])
    assert gateway["command"] == ["kilat-gateway"]
    assert gateway["ports"] == ["8080:8080"]
    assert gateway["environment"]["KILAT_UPSTREAM"] == "http://worker:6066"
    assert gateway["environment"]["GATEWAY_HOST"] == "0.0.0.0"  # the default is loopback
    assert services["migrate"]["command"] == ["alembic", "upgrade", "heads"]
    for name in ("worker", "gateway", "migrate"):
        env = services[name]["environment"]
        assert env["KILAT_ENV"] == "production"
        assert env["JWT_SECRET"].startswith("${JWT_SECRET:?")  # no default secret
        assert env["KAFKA_BROKERS"] == "kafka:9092"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_dockerfile_copies_only_what_exists_and_runs_known_entry_points() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    assert 'CMD ["faust", "-A", "kilat", "worker"' in text
    setup = (ROOT / "setup.cfg").read_text()
    assert "kilat-gateway = gateway.app:main" in setup


def test_entry_points_exist_in_the_environment() -> None:
    for tool in ("faust", "kilat", "kilat-gateway", "alembic"):
        assert shutil.which(tool, path=str(ROOT / ".venv" / "bin")), tool


def test_prometheus_and_grafana_are_provisioned_with_the_rules_and_dashboard() -> None:
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert prometheus["scrape_configs"][0]["dns_sd_configs"][0]["names"] == ["worker"]
    assert "GRAFANA_ADMIN_PASSWORD:?" in services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    datasource = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "kilat.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "kilat.json").read_text())
    exported = (ROOT / "web" / "metrics.py").read_text() + \
        (ROOT / "streams" / "monitoring.py").read_text()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        for target in panel["targets"]:
            for metric in re.findall(r"\bkilat_[a-z_]+", target["expr"]):
                base = re.sub(r"_(total|count|sum|bucket)$", "", metric)
                assert f'"{base}' in exported, f"{panel['title']}: {metric} is not exported"
