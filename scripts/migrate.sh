#!/usr/bin/env bash
# Applies every migration branch (alembic upgrade heads) to DATABASE_URL.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
.venv/bin/alembic upgrade heads
