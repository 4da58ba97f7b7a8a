#!/usr/bin/env bash
# A real Mosquitto MQTT broker for the tests and the replay demo, as a new user would run it:
# the Debian package (installed if missing), as a non-root user, on a free local port,
# with persistence in a fresh temporary directory (so a broker restart keeps persistent
# sessions and their queued QoS 1 messages).
#   eval "$(scripts/mosquitto.sh start)"      exports URBANSEC_TEST_MQTT_URL, URBANSEC_TEST_MQTT_DIR
#   scripts/mosquitto.sh stop DIR              stop the broker (keeping nothing)
#   scripts/mosquitto.sh halt DIR              stop it, keeping its persistence (to restart)
#   scripts/mosquitto.sh resume DIR            start it again on the same port and data
set -euo pipefail

MOSQUITTO=/usr/sbin/mosquitto

install_package() {
    [ -x "$MOSQUITTO" ] && return 0
    echo "installing mosquitto (Debian package)" >&2
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >&2
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run() {
    local dir=$1
    local port
    port=$(cat "$dir/port")
    if [ "$(id -u)" -eq 0 ]; then
        # as root, run it as the package's unprivileged "mosquitto" user
        id mosquitto >/dev/null 2>&1 || useradd --system --no-create-home mosquitto
        chown -R mosquitto "$dir"
        runuser -u mosquitto -- "$MOSQUITTO" -c "$dir/mosquitto.conf" -d
    else
        "$MOSQUITTO" -c "$dir/mosquitto.conf" -d
    fi
    # ready when the port accepts connections
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $port)))"; then
            return 0
        fi
        sleep 0.05
    done
    echo "mosquitto did not start; see $dir/mosquitto.log" >&2
    return 1
}

start() {
    install_package
    local dir port
    dir=$(mktemp -d /tmp/urbansec-mosquitto.XXXXXX)
    chmod 755 "$dir"
    port=$(free_port)
    echo "$port" >"$dir/port"
    cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/
autosave_interval 1
pid_file $dir/mosquitto.pid
log_dest file $dir/mosquitto.log
max_queued_messages 0
max_inflight_messages 0
CONF
    if [ "$(id -u)" -eq 0 ]; then echo "user mosquitto" >>"$dir/mosquitto.conf"; fi
    run "$dir"
    echo "export URBANSEC_TEST_MQTT_DIR=$dir"
    echo "export URBANSEC_TEST_MQTT_URL=mqtt://127.0.0.1:$port"
}

halt() {
    local dir=$1
    [ -f "$dir/mosquitto.pid" ] || return 0
    local pid
    pid=$(cat "$dir/mosquitto.pid")
    kill "$pid" 2>/dev/null || true
    # it saves its persistence file on the way out
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    rm -f "$dir/mosquitto.pid"
}

stop() {
    local dir=${1:-${URBANSEC_TEST_MQTT_DIR:-}}
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    halt "$dir"
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    halt) halt "$2" ;;
    resume) run "$2" ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | halt DIR | resume DIR | stop DIR" >&2; exit 2 ;;
esac
