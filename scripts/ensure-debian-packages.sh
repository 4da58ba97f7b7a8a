#!/usr/bin/env bash
# Install the Debian packages whose files are missing, as a new user on a fresh Debian 12
# would (apt-get update once, then install; sudo when not root). Each argument is
# WHAT:PACKAGE, WHAT being a file path or a command looked up on PATH, e.g.
#   scripts/ensure-debian-packages.sh npm:npm /usr/bin/chromium:chromium
set -euo pipefail

missing=()
for pair in "$@"; do
    file=${pair%%:*}
    package=${pair#*:}
    if [ -z "$file" ] || [ -z "$package" ] || [ "$file" = "$pair" ]; then
        echo "usage: $0 FILE|COMMAND:PACKAGE ..." >&2
        exit 2
    fi
    case "$file" in
        */*) [ -e "$file" ] || missing+=("$package") ;;
        *) command -v "$file" >/dev/null 2>&1 || missing+=("$package") ;;
    esac
done
[ ${#missing[@]} -gt 0 ] || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}; install them with your system's package manager" >&2
    exit 1
fi
echo "installing ${missing[*]} (Debian packages)" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
