#!/usr/bin/env bash
# Install the dashboard's pinned front-end libraries (web/package-lock.json) and copy their
# dist files to src/urbansec/web/static/vendor/, where the app serves them as /static/vendor/.
# Idempotent: `npm ci` runs only when web/node_modules does not match the lock file (a hash
# stamp), and the copy only replaces files whose content changed.
set -euo pipefail
cd "$(dirname "$0")/.."

WEB=web
VENDOR=src/urbansec/web/static/vendor
STAMP=$WEB/node_modules/.urbansec-lock.sha256

if ! command -v npm >/dev/null 2>&1; then
    cat >&2 <<'MSG'
build-web.sh: npm is not installed, and the dashboard needs its pinned front-end libraries
(Leaflet, Chart.js, axe-core) from npm. Install Node.js and npm, e.g. on Debian:
    sudo apt-get install -y npm
then run `bash scripts/build-web.sh` (or the make target) again.
MSG
    exit 1
fi

lock_hash=$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$lock_hash" ]; then
    echo "build-web.sh: installing the front-end libraries (npm ci)" >&2
    # --ignore-scripts: the three libraries need no install scripts, and none should run
    (cd "$WEB" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    echo "$lock_hash" >"$STAMP"
fi

# source (under web/node_modules/) -> destination (under the vendor directory)
FILES=(
    "leaflet/dist/leaflet.js leaflet/leaflet.js"
    "leaflet/dist/leaflet.css leaflet/leaflet.css"
    "leaflet/dist/images/layers.png leaflet/images/layers.png"
    "leaflet/dist/images/layers-2x.png leaflet/images/layers-2x.png"
    "leaflet/dist/images/marker-icon.png leaflet/images/marker-icon.png"
    "leaflet/dist/images/marker-icon-2x.png leaflet/images/marker-icon-2x.png"
    "leaflet/dist/images/marker-shadow.png leaflet/images/marker-shadow.png"
    "leaflet/LICENSE leaflet/LICENSE"
    "chart.js/dist/chart.umd.js chart.js/chart.umd.js"
    "chart.js/LICENSE.md chart.js/LICENSE.md"
    "axe-core/axe.min.js axe-core/axe.min.js"
    "axe-core/LICENSE axe-core/LICENSE"
)
for pair in "${FILES[@]}"; do
    read -r source destination <<<"$pair"
    source=$WEB/node_modules/$source
    destination=$VENDOR/$destination
    if [ ! -f "$source" ]; then
        echo "build-web.sh: $source is missing after npm ci; is web/package-lock.json intact?" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$destination")"
    # cmp first so an unchanged file keeps its mtime (and browsers' caches stay valid)
    cmp -s "$source" "$destination" || cp "$source" "$destination"
done
echo "build-web.sh: front-end libraries ready in $VENDOR" >&2
