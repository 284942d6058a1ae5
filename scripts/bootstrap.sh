#!/usr/bin/env bash
# Creates .venv and installs Kilat with its test dependencies (idempotent: re-runs only when
# setup.cfg changed). Installs the Debian build prerequisites when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
stamp="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f .venv/.kilat-stamp || "$(cat .venv/.kilat-stamp)" != "$stamp" ]]; then
  echo "[bootstrap] installing Python dependencies into .venv" >&2
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]' >/dev/null
  echo "$stamp" > .venv/.kilat-stamp
fi
