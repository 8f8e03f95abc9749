#!/usr/bin/env bash
# Memory under a flood of large bodies: h2load opens CLIENTS connections at once (default 500),
# each sending one pod review padded to just under 8 MiB (an annotation holds the padding), to
# a release build of kadmit with every policy on and its default limits (--max-body-bytes
# 8 MiB, --max-buffered-body-bytes 64 MiB). Prints the answers by status and kadmit's RSS at
# idle and at its peak (VmHWM), then a normal review's answer after the flood. HTTP/1.1, or
# HTTP/2 with FLOOD_H2=1.
#
#   scripts/body-flood.sh [CLIENTS] [-- extra kadmit serve flags]
#
# For comparison, `-- --max-buffered-body-bytes 17179869184` lifts the shared bound (needs
# several GiB of memory).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-500}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
extra=("$@")
shared=${KADMIT_SHARED_DIR:-../shared}
command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 2; }
cargo build --release --quiet

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$shared/bench/pod-review.json" "$work/big.json" <<'PY'
import json, sys
review = json.load(open(sys.argv[1]))
review["request"]["object"]["metadata"].setdefault("annotations", {})["padding"] = ""
base = len(json.dumps(review).encode())
review["request"]["object"]["metadata"]["annotations"]["padding"] = "x" * (8 * 1024 * 1024 - 1024 - base)
json.dump(review, open(sys.argv[2], "w"))
PY
echo "body: $(stat -c %s "$work/big.json") bytes, $clients clients at once"

target/release/kadmit --log-level warn serve --dev --bind 127.0.0.1:9447 --metrics-bind 127.0.0.1:9084 \
  --config scripts/bench-full-policies.yaml --cluster scripts/bench-cluster.yaml "${extra[@]}" \
  >/dev/null 2>"$work/kadmit.log" &
pid=$!
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9084/readyz >/dev/null && break
  sleep 0.1
done
rss() { awk -v k="$1:" '$1 == k {print $2 / 1024 " MiB"}' "/proc/$pid/status"; }
echo "idle: RSS $(rss VmRSS)"

# FLOOD_H2=1: HTTP/2 instead (one stream per connection).
protocol=(--h1)
[ -n "${FLOOD_H2:-}" ] && protocol=(-m 1)
h2load "${protocol[@]}" -n "$clients" -c "$clients" -t 2 -d "$work/big.json" -H 'content-type: application/json' \
  https://127.0.0.1:9447/validate >"$work/h2load.out" 2>&1 || true
grep -E '^(finished in|requests:|status codes:)' "$work/h2load.out"
echo "after the flood: RSS $(rss VmRSS), peak RSS $(rss VmHWM)"
curl -sk -o "$work/answer.json" -w 'a normal review after the flood: HTTP %{http_code}\n' \
  -H 'content-type: application/json' --data-binary "@$shared/bench/pod-review.json" \
  https://127.0.0.1:9447/validate
grep -o '"allowed":[a-z]*' "$work/answer.json"
