#!/usr/bin/env bash
# Make sure a PostgreSQL server (initdb, pg_ctl) is installed, for the tests that run against a
# real server (tests/postgres.py starts a private cluster per test session). Idempotent: does
# nothing when initdb is already on PATH or under /usr/lib/postgresql/*/bin. Does not start a
# server; a cluster that Debian's package starts by itself is left alone.
set -euo pipefail

find_initdb() {
    if command -v initdb >/dev/null 2>&1; then
        command -v initdb
        return 0
    fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$found" ] && [ -x "$found" ]; then
        echo "$found"
        return 0
    fi
    return 1
}

if existing=$(find_initdb); then
    echo "install_postgres: PostgreSQL already present ($existing), nothing to do"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install_postgres: PostgreSQL (initdb) not found and not root, no sudo: install it yourself," \
         "e.g. as root: apt-get install -y postgresql" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_postgres: PostgreSQL (initdb) not found and no apt-get: install the PostgreSQL server" \
         "with your system's package manager" >&2
    exit 1
fi

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null

if installed=$(find_initdb); then
    echo "install_postgres: installed PostgreSQL with apt-get ($installed)"
else
    echo "install_postgres: apt-get install postgresql finished but initdb is still not found" >&2
    exit 1
fi
