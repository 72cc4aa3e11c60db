#!/usr/bin/env bash
# Runs the azure-eventhub client tests against the eventhub_stub example.
# Creates the virtualenv on first use (needs PyPI).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${EH_VENV:-/tmp/eh-venv}"
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q azure-eventhub==5.15.1 pytest
fi
cd "$here"
exec "$venv/bin/pytest" -q "$@"
