#!/usr/bin/env bash
# Installs what the tests need and runs them all, from a fresh clone:
#   formatting and lints, Rust unit and integration tests, the micro-benchmarks in test mode,
#   the checked-in generated code, and the official-SDK suites against the real binary.
# Usage: tests/run.sh            (everything)
#        tests/run.sh python     (only the SDK suites; builds the binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
only=${1:-all}

step() { printf '\n== %s\n' "$*"; }

# io_uring (the data plane's shards) locks its rings in memory.
ulimit -l unlimited 2>/dev/null || ulimit -l 1048576 2>/dev/null || true
# Each SDK connection is a file descriptor; load tests open many.
ulimit -n 65536 2>/dev/null || true

# Servers under test preallocate their segments on real disk (in $TMPDIR); a full disk would
# show up as partitions refusing devices, so say it plainly before anything runs.
scratch=${TMPDIR:-/tmp}
free_mib=$(df -Pm "$scratch" 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [ "${free_mib:-0}" -lt 2048 ]; then
    echo "only ${free_mib:-0} MiB free in $scratch (or it does not exist); the tests need at least 2 GiB there" >&2
    exit 1
fi

step "Python environment with the pinned official SDKs (.venv)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

if [ "$only" = all ]; then
    step "cargo fmt --check"
    cargo fmt --all -- --check

    step "cargo clippy (warnings are errors)"
    cargo clippy --workspace --all-targets --locked

    # The system tests spawn the real binary; build it before they run.
    step "build the shoal binary"
    cargo build --locked --bin shoal

    step "cargo test (unit, integration, crash and protocol tests)"
    cargo test --workspace --locked

    step "benchmarks in test mode (one iteration each, so they cannot rot)"
    cargo test --locked -p benches --benches

    if [ -x schemas/regenerate.sh ]; then
        step "generated flatbuffers code is current"
        schemas/regenerate.sh --check
    fi
fi

step "build the shoal binary"
cargo build --locked --bin shoal

step "official SDK suites against the real binary"
SHOAL_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/shoal" .venv/bin/python -m pytest tests/python
