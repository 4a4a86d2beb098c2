#!/usr/bin/env bash
# Builds the Debian package: target/debian/clickhook_<version>_<arch>.deb.
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p clickhook
mkdir -p target/package
target/release/clickhook completions bash > target/package/clickhook.bash
cargo deb -p clickhook --no-build --strip "$@"
