#!/usr/bin/env bash
# Creates .venv and installs Kilat with its test dependencies (idempotent: re-runs only when
# setup.cfg changed). Installs the Debian build prerequisites when missing, Leaflet for the
# public trip page (served by the workers, never from a CDN) and promtool (Debian's prometheus
# package) for the alert rules' tests. `--browser` also installs
# Debian's chromium, which the browser test drives (make test, CI).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
apt_install() {
  [[ -n "${APT_UPDATED:-}" ]] || { apt-get update -qq >/dev/null; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [[ ! -f /usr/share/javascript/leaflet/leaflet.js ]]; then
  echo "[bootstrap] installing libjs-leaflet" >&2
  apt_install libjs-leaflet
fi
if ! command -v promtool >/dev/null; then
  echo "[bootstrap] installing prometheus (promtool tests the alert rules)" >&2
  apt_install prometheus
fi
if [[ "${1:-}" == "--browser" ]] && ! command -v chromium >/dev/null; then
  echo "[bootstrap] installing chromium (browser tests)" >&2
  apt_install chromium fonts-dejavu-core
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
stamp="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f .venv/.kilat-stamp || "$(cat .venv/.kilat-stamp)" != "$stamp" ]]; then
  echo "[bootstrap] installing Python dependencies into .venv" >&2
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]' >/dev/null
  echo "$stamp" > .venv/.kilat-stamp
fi
