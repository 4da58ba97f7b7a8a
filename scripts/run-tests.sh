#!/usr/bin/env bash
# Start the services the tests need (PostgreSQL+PostGIS and Mosquitto, as non-root users, on
# free ports, in temp dirs), run ruff and pytest against them, and stop them again whatever happens.
# With --bench, run the benchmarks against the same services instead of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

eval "$(bash scripts/test-services.sh start)"
trap 'bash scripts/test-services.sh stop "$URBANSEC_TEST_SERVICES_DIR"' EXIT
export URBANSEC_REQUIRE_POSTGRES=1
export URBANSEC_REQUIRE_BROWSER=1
# a real Mosquitto MQTT broker (Debian package, non-root, free local port) for the sensor feeds
eval "$(bash scripts/mosquitto.sh start)"
trap 'bash scripts/mosquitto.sh stop "$URBANSEC_TEST_MQTT_DIR"; bash scripts/test-services.sh stop "$URBANSEC_TEST_SERVICES_DIR"' EXIT
export URBANSEC_REQUIRE_MQTT=1

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
