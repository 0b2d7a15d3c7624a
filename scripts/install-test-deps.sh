#!/usr/bin/env bash
# Installs, as root on Debian, every program the test suite runs for real. Idempotent.
set -euo pipefail
packages=(
  docker.io containerd docker-registry skopeo   # engine + swarm, distribution 2.8 upstream, pull clients
  openssl curl ca-certificates iproute2 iptables  # certificates, throttled clients, test network namespaces
  swift-proxy swift-account swift-container swift-object memcached  # Swift all-in-one (swift + s3api) for the storage tests
  wrk                                            # load generator of npm run bench (bench/load.ts)
  prometheus                                     # promtool and a real Prometheus for the docs' alert rules and dashboard
  haproxy nginx libnginx-mod-stream              # validate and run the rendered external load balancer configs; the zero-copy front
  gcc libc6-dev                                  # the bench's sendfile addon prototype (bench/sendfile/, Node's headers come with nodejs)
  openssh-server strace                          # sshd for the NFS export's SSH apply step; the filesystem commit order
  apache2-utils                                  # htpasswd: bcrypt users of the htpasswd-protected upstream (revocation test)
)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ -d node_modules ] || npm ci
