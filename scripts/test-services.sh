#!/usr/bin/env bash
# Starts (or stops) the long-lived services the tests share: one Docker engine, as root, in its own data and
# exec roots, with a single-node swarm, and the cache image built into it. Registries, caches and storage emulators
# are started by the tests.
#   scripts/test-services.sh start | stop
# The engine listens on $DTR_TEST_DOCKER_SOCK (default /run/dtr-cache-test/docker.sock).
set -euo pipefail
state=${DTR_TEST_STATE:-/var/lib/dtr-cache-test}
sock=${DTR_TEST_DOCKER_SOCK:-/run/dtr-cache-test/docker.sock}
run=$(dirname "$sock")
root=$(cd "$(dirname "$0")/.." && pwd)
e2e_image=127.0.0.1:5000/dtr-cache:e2e
export DOCKER_HOST=unix://$sock

start() {
  mkdir -p "$state" "$run"
  if docker info >/dev/null 2>&1; then echo "dockerd already up on $sock"; else
    for driver in overlay2 vfs; do
      dockerd --storage-driver=$driver --data-root="$state/data-$driver" --exec-root="$run/exec" \
        -H "unix://$sock" --pidfile "$run/dockerd.pid" >"$run/dockerd.log" 2>&1 &
      for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
      if docker info >/dev/null 2>&1; then echo "dockerd up on $sock (storage driver $driver)"; break; fi
      kill "$(cat "$run/dockerd.pid" 2>/dev/null)" 2>/dev/null || true; sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 "$run/dockerd.log"; echo "dockerd did not start" >&2; exit 1; }
  fi
  if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != active ]; then
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    echo "swarm initialised"
  fi
  # The cache image the end-to-end tests deploy, built once here from the working tree (on bases made from the host's
  # node: no Docker Hub), so each test that needs it finds it whatever order jest runs them in. swarm-deploy.test.ts
  # builds it again under its own name (a layer-cache hit) and pushes that to the registry it runs on 127.0.0.1:5000.
  local base=127.0.0.1:5000/dtr-cache-base:local build=127.0.0.1:5000/dtr-cache-build-base:local
  RUNTIME_IMAGE=$base BUILD_IMAGE=$build bash "$root/scripts/build-base-image.sh" >/dev/null
  DOCKER_BUILDKIT=0 docker build -q -t "$e2e_image" --build-arg "BASE_IMAGE=$base" --build-arg "BUILD_IMAGE=$build" "$root" >/dev/null
  echo "cache image $e2e_image built"
}

stop() {
  if [ -f "$run/dockerd.pid" ]; then
    docker swarm leave --force >/dev/null 2>&1 || true
    pid=$(cat "$run/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$run/dockerd.pid"
    ip link delete docker0 2>/dev/null || true
    ip link delete docker_gwbridge 2>/dev/null || true
    echo "dockerd stopped"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
