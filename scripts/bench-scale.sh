#!/usr/bin/env bash
# Memory as the cluster grows: kadmit's resident set size (VmRSS, and the peak VmHWM) idle with an
# empty cluster, idle with a large snapshot (scripts/scale-snapshot.py: 10 000 namespaces,
# 10 000 LimitRanges, 50 000 Secrets, 10 000 ServiceAccounts, 1 000 GMSA specs), and after
# loading it with h2load (/mutate then /validate, HTTP/1.1, 8 connections, the bench review).
# Per-request cost with and without that snapshot is the criterion bench `scale`
# (cargo bench -p kadmit-core --bench scale).
#
#   scripts/bench-scale.sh [NAMESPACES] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
namespaces=${1:-10000}
requests=${2:-50000}
shared=${KADMIT_SHARED_DIR:-../shared}
body=$shared/bench/pod-review.json
command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 2; }
cargo build --release --quiet

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

rss() { awk -v k="$2" '$1 == k":" {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status"; }

start() { # label, then serve flags
  local label=$1; shift
  target/release/kadmit --log-level warn serve --dev --bind 127.0.0.1:9444 --metrics-bind 127.0.0.1:9081 "$@" \
    >"$work/out" 2>"$work/log" &
  pid=$!
  for _ in $(seq 600); do
    curl -sf http://127.0.0.1:9081/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 1
  echo "$label: idle VmRSS $(rss "$pid" VmRSS)"
}

load() {
  for endpoint in mutate validate; do
    h2load --h1 -n "$requests" -c 8 -d "$body" -H 'content-type: application/json' \
      "https://127.0.0.1:9444/$endpoint" | awk -v e="$endpoint" '/^finished in/ {print "  /" e ": " $4 " req/s"} /^status codes:/ {print "  /" e ": " $0}'
  done
  echo "  after load: VmRSS $(rss "$pid" VmRSS), peak VmHWM $(rss "$pid" VmHWM)"
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

start "empty cluster, default configuration"
stop

python3 scripts/scale-snapshot.py "$namespaces" >"$work/snapshot.json"
echo "snapshot: $(du -h "$work/snapshot.json" | cut -f1) for $namespaces namespaces"
start "empty cluster, every policy on" --config scripts/bench-full-policies.yaml --cluster scripts/bench-cluster.yaml
load
stop
start "large snapshot, every policy on" --config scripts/bench-full-policies.yaml --cluster "$work/snapshot.json"
load
stop
