#!/usr/bin/env bash
# kadmit with every policy on (scripts/bench-full-policies.yaml, the bench namespace from
# scripts/bench-cluster.yaml) against the transport floor, in the same run: /validate and /mutate,
# over HTTP/1.1 (8 connections) and HTTP/2, each through scripts/bench-floor.sh (alternating
# rounds, medians, kadmit/floor ratios).
#
#   scripts/bench-load.sh [ROUNDS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
requests=${2:-50000}
flags=(--config scripts/bench-full-policies.yaml --cluster scripts/bench-cluster.yaml)
for h2 in "" 1; do
  for endpoint in validate mutate; do
    if [ -n "$h2" ]; then protocol=HTTP/2; else protocol=HTTP/1.1; fi
    echo "=== /$endpoint, $protocol"
    BENCH_ENDPOINT=$endpoint BENCH_H2=$h2 scripts/bench-floor.sh "$rounds" "$requests" -- "${flags[@]}"
  done
done
