#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg on this machine, and checks what it put
# there: the installed binary against a scratch database (accounts, a server answering
# /healthz), the systemd unit (systemd-analyze verify), the service user, the settings file and
# the bash completions. Run by ./test.sh under CI=true or CLICKHOOK_TEST_PACKAGE=1 (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
package/build.sh --output target/debian/clickhook.deb
dpkg -i target/debian/clickhook.deb

scratch=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$scratch"; }
trap cleanup EXIT
bin=/usr/bin/clickhook
"$bin" --version
"$bin" --db "$scratch/c.db" account create --name Packaged --timezone UTC --json | grep -q '"api_key"'
"$bin" --db "$scratch/c.db" account list | grep -q Packaged
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" --db "$scratch/c.db" serve --listen "127.0.0.1:$port" >"$scratch/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" | grep -q ok

unit=$(dpkg -L clickhook | grep '/clickhook.service$')
# Unknown settings are only warnings to systemd-analyze: any word from it fails the check.
verdict=$(systemd-analyze verify "$unit" 2>&1)
[ -z "$verdict" ] || { echo "$verdict" >&2; exit 1; }
getent passwd clickhook >/dev/null
grep -q CLICKHOOK_DB /etc/default/clickhook
grep -q clickhook /usr/share/bash-completion/completions/clickhook
echo "package check passed: $(dpkg-query -W clickhook) installed, $unit verified"
