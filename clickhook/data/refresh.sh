#!/usr/bin/env bash
# Refreshes the maintained user-agent list clickhook ships (isbot's patterns) and the public
# corpora its verdict test measures on (crawler-user-agents' examples, user-agents' browsers),
# from the npm registry, recording each one's version, licence and isbot's own verdicts.
#
#   clickhook/data/refresh.sh                  # the latest of each
#   ISBOT=5.2.3 clickhook/data/refresh.sh      # a given isbot (also CRAWLERS=, BROWSERS=)
#
# Needs node and npm. Then: review the diff, `cargo test --test user_agents`, record the new
# measurement in bench/RESULTS.md, commit. Nothing in the build downloads: the files are committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "isbot@${ISBOT:-latest}" "crawler-user-agents@${CRAWLERS:-latest}" "user-agents@${BROWSERS:-latest}" >/dev/null
for f in *.tgz; do
  name=${f%-*.tgz}
  mkdir "$name" && tar xzf "$f" -C "$name"
done
node - "$work" "$here" <<'JS'
const fs = require("fs"), path = require("path");
const [work, data] = process.argv.slice(2);
const pkg = (name) => path.join(work, name, "package");
const meta = (name) => JSON.parse(fs.readFileSync(path.join(pkg(name), "package.json")));
const licence = (name) => fs.readFileSync(path.join(pkg(name), "LICENSE"), "utf8");
const isbotPkg = require(path.join(pkg("isbot"), "index.js"));
const isbot = meta("isbot");
const about = (name, m) => ({
  source: `https://www.npmjs.com/package/${name}/v/${m.version}`,
  repository: (m.repository && (m.repository.url || m.repository)) || "",
  version: m.version,
  license: m.license,
});
const write = (file, value) => fs.writeFileSync(file, JSON.stringify(value, null, 1) + "\n");

write(path.join(data, "isbot-patterns.json"), { ...about("isbot", isbot), patterns: isbotPkg.list });

const tests = path.join(data, "..", "tests", "data");
const crawlers = JSON.parse(fs.readFileSync(path.join(pkg("crawler-user-agents"), "crawler-user-agents.json")));
const examples = [...new Set(crawlers.flatMap((e) => e.instances || []))].sort();
write(path.join(tests, "crawler-user-agents.json"), {
  ...about("crawler-user-agents", meta("crawler-user-agents")),
  license_text: licence("crawler-user-agents"),
  isbot_version: isbot.version,
  user_agents: examples.map((ua) => ({ ua, isbot: isbotPkg.isbot(ua) })),
});
const browsers = require(path.join(pkg("user-agents"), "dist", "user-agents.json"));
const distinct = [...new Set(browsers.map((b) => b.userAgent))].sort();
write(path.join(tests, "browser-user-agents.json"), {
  ...about("user-agents", meta("user-agents")),
  license_text: licence("user-agents"),
  isbot_version: isbot.version,
  user_agents: distinct.map((ua) => ({ ua, isbot: isbotPkg.isbot(ua) })),
});
console.log(`isbot ${isbot.version}: ${isbotPkg.list.length} patterns; ${examples.length} crawler examples; ${distinct.length} browsers`);
JS
