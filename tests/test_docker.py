"""The container deployment files, validated without a Docker engine: they parse, reference
files that exist, and wire the services the way the platform needs."""

from __future__ import annotations

import re
import shutil

import yaml

from tests.platform import ROOT

DOCKER = ROOT / "docker"


def test_compose_wires_kafka_postgis_workers_and_gateway() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "postgis", "migrate", "worker", "gateway"}
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
