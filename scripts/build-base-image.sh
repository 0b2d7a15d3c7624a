#!/usr/bin/env bash
# Builds the base images the Dockerfile can use where Docker Hub is out of reach (CI, this machine), from
# the host's own node, without pulling anything:
#   $RUNTIME_IMAGE  FROM-scratch rootfs: node, the libraries `ldd` lists, CA certificates, /etc/passwd and
#                   /etc/group with the non-root user the image runs as (10001), /tmp. No shell, no npm.
#   $BUILD_IMAGE    the same plus npm, /bin/sh and /usr/bin/env, which `npm ci` and `npm run build` need.
# Usage: scripts/build-base-image.sh   (DOCKER_HOST as for the test engine; prints both image names)
# Then:  docker build --build-arg BASE_IMAGE=$RUNTIME_IMAGE --build-arg BUILD_IMAGE=$BUILD_IMAGE .
set -euo pipefail
RUNTIME_IMAGE=${RUNTIME_IMAGE:-127.0.0.1:5000/dtr-cache-base:local}
BUILD_IMAGE=${BUILD_IMAGE:-127.0.0.1:5000/dtr-cache-build-base:local}
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(readlink -f "$(dirname "$(readlink -f "$(command -v npm)")")/..")
major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "host node is $major; the cache needs node >= 20" >&2; exit 1; }

# Same inputs, same images: skip the import when both exist with this key, so the image build's layer cache holds.
key=$({ cat "$0"; "$node_bin" -v; sha256sum "$node_bin"; cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; } | sha256sum | cut -c1-16)
label() { docker image inspect -f '{{index .Config.Labels "dtr-cache.base-key"}}' "$1" 2>/dev/null || true; }
if [ "$(label "$RUNTIME_IMAGE")" = "$key" ] && [ "$(label "$BUILD_IMAGE")" = "$key" ]; then
  echo "$RUNTIME_IMAGE and $BUILD_IMAGE are up to date ($key)"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copies each program and every library it links into rootfs $1, at the same paths.
copy_with_libs() {
  local root=$1; shift
  local file lib
  for file in "$@"; do
    install -D -m 0755 "$(readlink -f "$file")" "$root$file"
    for lib in $(ldd "$file" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}'); do
      [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
  done
}

runtime=$work/runtime
mkdir -p "$runtime"/{etc,tmp,usr/bin} "$runtime/etc/ssl"
chmod 1777 "$runtime/tmp"
copy_with_libs "$runtime" /usr/bin/node
[ "$node_bin" = /usr/bin/node ] || install -m 0755 "$node_bin" "$runtime/usr/bin/node"
cp -rL /etc/ssl/certs "$runtime/etc/ssl/certs"
printf 'root:x:0:0:root:/root:/sbin/nologin\ndtr-cache:x:10001:10001:dtr-cache:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$runtime/etc/passwd"
printf 'root:x:0:\ndtr-cache:x:10001:\nnogroup:x:65534:\n' >"$runtime/etc/group"

build=$work/build
cp -a "$runtime" "$build"
copy_with_libs "$build" /bin/sh /usr/bin/env
mkdir -p "$build/usr/lib/node_modules"
cp -a "$npm_dir" "$build/usr/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$build/usr/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$build/usr/bin/npx"
# npm reads its builtin npmrc whatever --prefix says: trust the host's CA bundle (which may hold a proxy's CA).
[ -f /etc/ssl/certs/ca-certificates.crt ] && printf 'cafile=/etc/ssl/certs/ca-certificates.crt\n' >"$build/usr/lib/node_modules/npm/npmrc"

env_path='ENV PATH=/usr/local/bin:/usr/bin:/bin'
tar -C "$runtime" -c . | docker import -c "$env_path" -c "LABEL dtr-cache.base-key=$key" -m "node $("$node_bin" -v) from the host" - "$RUNTIME_IMAGE" >/dev/null
tar -C "$build" -c . | docker import -c "$env_path" -c "LABEL dtr-cache.base-key=$key" -m "node $("$node_bin" -v) and npm from the host" - "$BUILD_IMAGE" >/dev/null
echo "$RUNTIME_IMAGE $(docker image inspect -f '{{.Size}}' "$RUNTIME_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
echo "$BUILD_IMAGE $(docker image inspect -f '{{.Size}}' "$BUILD_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
