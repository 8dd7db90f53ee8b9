#!/usr/bin/env bash
# Refresh the page's copy of tus-js-client from the npm registry:
#
#   scripts/vendor-tus-js-client.sh 4.3.1
#
# Writes, in uploads_api/web/vendor/:
#   tus.min.js               the package's browser build (dist/tus.min.js), byte for byte
#   tus-js-client.LICENSE    the package's licence (MIT)
#   tus-js-client.version    the version and the build's SHA-256 (tests/test_page_tus.py
#                            checks the build against it)
# npm checks the tarball against the registry's integrity hash. The build must not need
# eval: the page's Content-Security-Policy (script-src 'self') forbids it, so a build that
# uses it is refused here. Afterwards run tests/test_page_tus.py and note the version in
# CHANGELOG.md.
set -euo pipefail

version="${1:?usage: $0 VERSION (for example 4.3.1)}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/uploads_api/web/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack "tus-js-client@$version" --silent --loglevel=error >/dev/null)
tar -xzf "$work"/tus-js-client-*.tgz -C "$work"
build="$work/package/dist/tus.min.js"
packed="$(node -p 'require(process.argv[1]).version' "$work/package/package.json")"
if [ "$packed" != "$version" ]; then
  echo "asked for $version, the registry gave $packed" >&2
  exit 1
fi
if grep -qE '(^|[^.A-Za-z0-9_$])eval\(|new Function\(|Function\("' "$build"; then
  echo "tus-js-client $version uses eval or Function(): the page's CSP would block it" >&2
  exit 1
fi

mkdir -p "$dest"
cp "$build" "$dest/tus.min.js"
cp "$work/package/LICENSE" "$dest/tus-js-client.LICENSE"
printf 'tus-js-client %s sha256:%s\n' "$version" \
  "$(sha256sum "$dest/tus.min.js" | cut -d' ' -f1)" >"$dest/tus-js-client.version"
echo "vendored tus-js-client $version into ${dest#"$root"/}"
