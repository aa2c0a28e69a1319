#!/usr/bin/env bash
# Test set-up for the shared-study tests of `emodistill tune` (tests/test_tune.py): they start a real
# PostgreSQL server from Debian's packages on loopback (tests/pg.py). This script makes sure the server
# binaries are there: as root with apt-get it installs Debian's `postgresql` package (the server is not
# started or enabled here; the tests run their own); otherwise it only says that those tests will be
# skipped. It never fails the set-up of a developer machine.
set -u
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "test-postgres: server binaries found: $(ls -d /usr/lib/postgresql/*/bin | tail -n 1)"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-postgres: installing Debian's postgresql (server binaries for the shared-study tests)"
    export DEBIAN_FRONTEND=noninteractive
    if { apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 ||
         { apt-get update -qq >/dev/null 2>&1 &&
           apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; }; }; then
        # Debian's package starts a cluster service on install where it can; the tests need none
        command -v pg_ctlcluster >/dev/null 2>&1 && service postgresql stop >/dev/null 2>&1 || true
        echo "test-postgres: installed $(ls -d /usr/lib/postgresql/*/bin | tail -n 1)"
        exit 0
    fi
    echo "test-postgres: apt-get install postgresql failed; the PostgreSQL tests will be skipped" \
         "(or fail if EMODISTILL_REQUIRE_POSTGRES=1)"
    exit 0
fi
echo "test-postgres: no PostgreSQL server binaries and not root with apt-get; the PostgreSQL tests of" \
     "tests/test_tune.py will be skipped (install Debian's 'postgresql' package to run them)"
exit 0
