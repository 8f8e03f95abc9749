#!/usr/bin/env bash
# Instruction profile of one pipeline over the bench review, with callgrind: instruction counts
# are the same from run to run on a noisy machine, so a change's effect shows even when timings
# cannot. Uses every policy (scripts/bench-full-policies.yaml, scripts/bench-cluster.yaml).
#
#   scripts/profile.sh [validate|mutate|mutate-bare] [ITERATIONS]
#
# mutate-bare removes the containers' securityContexts first, so that every defaulting policy
# patches. Prints instructions per review and the costliest functions (inclusive); the full
# profile is left in /tmp/kadmit-callgrind.<mode> for callgrind_annotate or kcachegrind.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-validate}
iterations=${2:-1000}
shared=${KADMIT_SHARED_DIR:-../shared}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 2; }
CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release --quiet -p kadmit-core --example profile
run() {
  valgrind --tool=callgrind --callgrind-out-file="$2" target/release/examples/profile "$mode" \
    scripts/bench-full-policies.yaml scripts/bench-cluster.yaml "$shared/bench/pod-review.json" "$1" \
    2>&1 | awk '/refs:/ {gsub(",", "", $NF); print $NF}'
}
# Two runs, so one-time costs (regex compilation, first allocations) cancel out.
one=$(run 1 /dev/null)
many=$(run "$iterations" "/tmp/kadmit-callgrind.$mode")
echo "$mode: $(( (many - one) / (iterations - 1) )) instructions per review (callgrind, $iterations iterations)"
callgrind_annotate --inclusive=yes "/tmp/kadmit-callgrind.$mode" 2>/dev/null \
  | grep -E 'kadmit|serde_json|k8s_openapi|json_patch' | head -25 | cut -c1-160
