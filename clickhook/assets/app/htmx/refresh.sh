#!/usr/bin/env bash
# Refreshes the htmx that the dashboard (/app) serves from inside the binary, from the npm
# registry (htmx.org, 0BSD), checking the tarball against the registry's integrity hash.
#
#   clickhook/assets/app/htmx/refresh.sh              # the latest 2.x
#   VERSION=2.0.11 clickhook/assets/app/htmx/refresh.sh
#
# Then: run the browser test (./test.sh browser::), commit. Nothing in the build downloads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
meta=$(curl -sf https://registry.npmjs.org/htmx.org)
version=${VERSION:-$(python3 -c 'import sys, json; v = [k for k in json.load(sys.stdin)["versions"] if k.startswith("2.") and "-" not in k]; print(sorted(v, key=lambda s: tuple(map(int, s.split("."))))[-1])' <<<"$meta")}
read -r tarball integrity < <(python3 -c 'import sys, json; d = json.load(sys.stdin)["versions"][sys.argv[1]]["dist"]; print(d["tarball"], d["integrity"])' "$version" <<<"$meta")
curl -sf -o "$work/htmx.tgz" "$tarball"
[ "$(openssl dgst -sha512 -binary "$work/htmx.tgz" | base64 -w0)" = "${integrity#sha512-}" ] || { echo "integrity mismatch" >&2; exit 1; }
tar xzf "$work/htmx.tgz" -C "$work"
cp "$work/package/dist/htmx.min.js" "$work/package/LICENSE" "$here/"
cat >"$here/SOURCE" <<SRC
htmx.org $version
$tarball
integrity $integrity
licence 0BSD (LICENSE)
SRC
echo "htmx.org $version"
