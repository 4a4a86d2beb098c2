#!/usr/bin/env bash
# The whole test suite, on both stores: SQLite, then PostgreSQL (CLICKHOOK_TEST_PG_URL,
# default postgres://root@127.0.0.1:5432/test; every server the tests start gets a schema of
# its own there). Without a reachable PostgreSQL the second half is skipped, except under CI=true.
# Then, under CI=true or CLICKHOOK_TEST_PACKAGE=1, the Debian package (package/test.sh).
# Arguments go to `cargo test` (e.g. ./test.sh clicks:: to run some tests).
set -euo pipefail
cd "$(dirname "$0")"

cargo test --workspace "$@"

url=${CLICKHOOK_TEST_PG_URL:-postgres://root@127.0.0.1:5432/test}
hostport=${url#*://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
host=${hostport%:*}; port=${hostport##*:}; [ "$port" = "$hostport" ] && port=5432
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "== the same suite on PostgreSQL ($url)"
  CLICKHOOK_TEST_STORE=postgres CLICKHOOK_TEST_PG_URL="$url" cargo test --workspace --test api "$@"
elif [ "${CI:-}" = true ]; then
  echo "PostgreSQL half: no PostgreSQL at $host:$port, and CI requires it" >&2
  exit 1
else
  echo "PostgreSQL half SKIPPED: no PostgreSQL at $host:$port (set CLICKHOOK_TEST_PG_URL to run it)"
fi

# The Debian package: built, installed with dpkg, checked (package/test.sh). It changes the
# machine, so it runs only where that is wanted: CI, or CLICKHOOK_TEST_PACKAGE=1.
if [ "${CI:-}" = true ] || [ -n "${CLICKHOOK_TEST_PACKAGE:-}" ]; then
  echo "== the Debian package"
  package/test.sh
else
  echo "Debian package check SKIPPED: it installs the package with dpkg (set CLICKHOOK_TEST_PACKAGE=1 to run it)"
fi
