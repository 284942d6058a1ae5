"""The Prometheus alert rules fire on the series they are for and stay quiet on their near
misses (docker/prometheus/alerts_test.yml), checked by Debian's promtool. scripts/bootstrap.sh
installs it; a machine without it fails here rather than skipping the rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "docker" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package"
    return found


def test_alert_rules_are_valid() -> None:
    run = subprocess.run([promtool(), "check", "rules", "alerts.yml"], cwd=PROMETHEUS,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "8 rules found" in run.stdout


def test_alert_rules_fire_and_stay_quiet_as_their_unit_tests_say() -> None:
    run = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_metric_an_alert_reads_is_exported_by_a_worker() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {n for rule in rules for n in re.findall(r"\bkilat_[a-z_]+", rule["expr"])}
    exported = "".join((ROOT / path).read_text()
                       for path in ("web/metrics.py", "streams/monitoring.py"))
    for name in names:
        base = re.sub(r"_(count|sum|bucket)$", "", name)
        if name.endswith("_total"):
            base = name[: -len("_total")]
        assert f'"{base}' in exported, f"{name} is not defined by a worker"
