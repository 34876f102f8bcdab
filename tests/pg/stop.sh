#!/usr/bin/env bash
# Stop the server tests/pg/start.sh started and remove its folder. Takes the folder from
# PG_TEST_DIR (or the first argument). Safe to run twice.
set -euo pipefail
DIR="${1:-${PG_TEST_DIR:-}}"
[ -n "$DIR" ] || { echo "tests/pg/stop.sh: PG_TEST_DIR is not set" >&2; exit 1; }
[ -d "$DIR/data" ] || exit 0
BIN="${PG_TEST_BIN:-${PG_TEST_CACHE:-/var/tmp/ingestd-pgserver-0.1.6}/pgserver/pginstall/bin}"
OWNER=$(stat -c %U "$DIR/data")
if [ "$(id -u)" = 0 ] && [ "$OWNER" != root ]; then
    setpriv --reuid="$OWNER" --regid="$OWNER" --init-groups -- \
        "$BIN/pg_ctl" --pgdata="$DIR/data" --mode=fast --wait stop >&2 || true
else
    "$BIN/pg_ctl" --pgdata="$DIR/data" --mode=fast --wait stop >&2 || true
fi
rm -rf "$DIR"
