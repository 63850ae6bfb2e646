#!/usr/bin/env bash
# Installs what is needed, builds, starts mercato-server on its embedded
# RocksDB in ./mercato-data, loads the seeded demo shop, and keeps the server
# in the foreground (Ctrl-C drains, checkpoints and exits).
# Environment: MERCATO_LISTEN (default 127.0.0.1:50051), MERCATO_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
./deploy/build.sh
LISTEN="${MERCATO_LISTEN:-127.0.0.1:50051}"
DATA="${MERCATO_DATA:-mercato-data}"

./build/mercato-server --listen="$LISTEN" --data_dir="$DATA" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER' INT TERM
for _ in $(seq 1 100); do
  if ./build/mercatoctl --target="$LISTEN" --deadline_ms=500 status 2>/dev/null | grep -q '"ready": true'; then
    break
  fi
  sleep 0.2
done
echo "loading the demo shop (repeated runs are deduplicated by event id)..."
./build/mercatoctl --target="$LISTEN" demo
echo "mercato-server is serving on $LISTEN; try: ./build/mercatoctl --target=$LISTEN status"
wait $SERVER
