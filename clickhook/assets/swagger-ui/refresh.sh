#!/usr/bin/env bash
# Refreshes the Swagger UI that `GET /docs` serves from inside the binary, from the npm registry
# (swagger-ui-dist, Apache-2.0), checking the tarball against the registry's integrity hash.
#
#   clickhook/assets/swagger-ui/refresh.sh            # the latest
#   VERSION=5.35.0 clickhook/assets/swagger-ui/refresh.sh
#
# Then: open /docs, run the tests, commit. Nothing in the build downloads: the files are committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
meta=$(curl -sf https://registry.npmjs.org/swagger-ui-dist)
version=${VERSION:-$(python3 -c 'import sys, json; print(json.load(sys.stdin)["dist-tags"]["latest"])' <<<"$meta")}
read -r tarball integrity < <(python3 -c 'import sys, json; d = json.load(sys.stdin)["versions"][sys.argv[1]]["dist"]; print(d["tarball"], d["integrity"])' "$version" <<<"$meta")
curl -sf -o "$work/ui.tgz" "$tarball"
[ "$(openssl dgst -sha512 -binary "$work/ui.tgz" | base64 -w0)" = "${integrity#sha512-}" ] || { echo "integrity mismatch" >&2; exit 1; }
tar xzf "$work/ui.tgz" -C "$work"
for f in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE; do
  # The source maps are not shipped: their references would only draw 404s.
  grep -v '^//# sourceMappingURL=\|^/\*# sourceMappingURL=' "$work/package/$f" >"$here/$f" || true
done
cat >"$here/SOURCE" <<SRC
swagger-ui-dist $version
$tarball
integrity $integrity
licence Apache-2.0 (LICENSE, NOTICE; bundled libraries: swagger-ui-bundle.js.LICENSE.txt)
SRC
echo "swagger-ui-dist $version"
