#!/usr/bin/env bash
# Start the services the tests need (PostgreSQL+PostGIS, as a non-root user, on a free port,
# in a temp dir), run ruff and pytest against them, and stop them again whatever happens.
# With --bench, run the benchmarks against the same services instead of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

eval "$(bash scripts/test-services.sh start)"
trap 'bash scripts/test-services.sh stop "$URBANSEC_TEST_SERVICES_DIR"' EXIT
export URBANSEC_REQUIRE_POSTGRES=1

if [ "${1:-}" = "--bench" ]; then
    # the drivers; bench_*.py are their parts and _*.py shared helpers
    for script in benchmarks/*.py; do
        case "$(basename "$script")" in _*|bench_*) continue ;; esac
        "$BIN/python" "$script"
    done
    exit 0
fi

"$BIN/ruff" check .
"$BIN/python" -m pytest "$@"
