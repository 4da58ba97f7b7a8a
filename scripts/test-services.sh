#!/usr/bin/env bash
# Install (if missing) and start what the test suite needs, as a new user would:
# a real PostgreSQL 15 + PostGIS 3 server, as the non-root user "postgres", on a free local
# port, in a fresh temporary directory. Prints "export" lines for the caller to eval.
#   eval "$(scripts/test-services.sh start)"   ...   scripts/test-services.sh stop "$DIR"
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

install_packages() {
    local missing=()
    [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
    [ -f /usr/share/postgresql/15/extension/postgis.control ] || missing+=(postgresql-15-postgis-3)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} (Debian packages)" >&2
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    install_packages
    local dir port run_as=()
    dir=$(mktemp -d /tmp/urbansec-test-services.XXXXXX)
    chmod 755 "$dir"
    # PostgreSQL refuses to run as root: run it as the unprivileged "postgres" user.
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
        chown postgres "$dir"
        run_as=(runuser -u postgres --)
    fi
    port=$(free_port)
    "${run_as[@]}" "$PG_BIN/initdb" -D "$dir/pg" -U urbansec --auth=trust -E UTF8 >"$dir/initdb.log"
    "${run_as[@]}" "$PG_BIN/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
        start >&2
    "${run_as[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U urbansec urbansec_test
    "${run_as[@]}" psql -q -h 127.0.0.1 -p "$port" -U urbansec -d urbansec_test \
        -c "CREATE EXTENSION IF NOT EXISTS postgis" >&2
    echo "export URBANSEC_TEST_SERVICES_DIR=$dir"
    echo "export URBANSEC_TEST_POSTGRES_URL=postgresql://urbansec@127.0.0.1:$port/urbansec_test"
}

stop() {
    local dir=${1:-${URBANSEC_TEST_SERVICES_DIR:-}}
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    if [ -d "$dir/pg" ]; then
        if [ "$(id -u)" -eq 0 ]; then
            runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/pg" -m fast -w stop >&2 || true
        else
            "$PG_BIN/pg_ctl" -D "$dir/pg" -m fast -w stop >&2 || true
        fi
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
