#!/usr/bin/env bash
# kadmit with every policy on (scripts/bench-full-policies.yaml, the bench namespace from
# scripts/bench-cluster.yaml) against the transport floor, in the same run: /validate and /mutate,
# over HTTP/1.1 (8 connections) and HTTP/2, each through scripts/bench-floor.sh (alternating
# rounds, medians, kadmit/floor ratios). Every defaulting policy patches the /mutate review.
#
#   scripts/bench-load.sh [ROUNDS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
requests=${2:-50000}
flags=(--config scripts/bench-full-policies.yaml --cluster scripts/bench-cluster.yaml)
shared=${KADMIT_SHARED_DIR:-../shared}
# /mutate gets the bench review without its containers' securityContexts, so that every
# defaulting policy patches (resources, pull secrets, security defaults); /validate the review
# as published (it passes restricted). Both servers get the same body.
bare=$(mktemp --suffix .json)
trap 'rm -f "$bare"' EXIT
python3 - "$shared/bench/pod-review.json" "$bare" <<'PY'
import json, sys
review = json.load(open(sys.argv[1]))
for key in ("containers", "initContainers"):
    for container in review["request"]["object"]["spec"].get(key, []):
        container.pop("securityContext", None)
json.dump(review, open(sys.argv[2], "w"))
PY
for h2 in "" 1; do
  for endpoint in validate mutate; do
    if [ -n "$h2" ]; then protocol=HTTP/2; else protocol=HTTP/1.1; fi
    body=$shared/bench/pod-review.json
    [ "$endpoint" = mutate ] && body=$bare
    echo "=== /$endpoint, $protocol, $(basename "$body")"
    BENCH_BODY=$body BENCH_ENDPOINT=$endpoint BENCH_H2=$h2 scripts/bench-floor.sh "$rounds" "$requests" -- "${flags[@]}"
  done
done
