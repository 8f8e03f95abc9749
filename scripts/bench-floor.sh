#!/usr/bin/env bash
# Throughput and latency of kadmit against the transport floor server (../shared/bench), measured
# in the same run: h2load over HTTP/1.1 keep-alive, 8 connections, the pod review as body,
# floor and kadmit alternately for several rounds; prints medians and kadmit/floor ratios.
#
#   scripts/bench-floor.sh [ROUNDS] [REQUESTS] [-- extra kadmit serve flags]
#
# Needs h2load (Debian: nghttp2-client). Builds both servers in release mode first.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
requests=${2:-50000}
shift $(( $# >= 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
extra=("$@")
shared=${KADMIT_SHARED_DIR:-../shared}
body=${BENCH_BODY:-$shared/bench/pod-review.json}   # BENCH_BODY: another review to send
endpoint=${BENCH_ENDPOINT:-validate}
h2mode=${BENCH_H2:-}   # set BENCH_H2=1 for HTTP/2 instead of HTTP/1.1

command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 2; }
cargo build --release --quiet
cargo build --release --quiet --manifest-path "$shared/bench/floor/Cargo.toml" --target-dir /tmp/floor-target

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

/tmp/floor-target/release/floor 9443 2>"$work/floor.log" &
pids+=($!)
target/release/kadmit --log-level warn serve --dev --bind 127.0.0.1:9444 --metrics-bind 127.0.0.1:9081 "${extra[@]}" \
  >"$work/kadmit.out" 2>"$work/kadmit.log" &
pids+=($!)
for port in 9443 9444; do
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
done

run() { # name port round
  local log="$work/$1-$3.tsv"
  local proto=(--h1)
  [ -n "$h2mode" ] && proto=(-m 10)
  h2load "${proto[@]}" -n "$requests" -c 8 -d "$body" -H 'content-type: application/json' \
    --log-file "$log" "https://127.0.0.1:$2/$endpoint" >"$work/$1-$3.out" 2>&1
  local failed
  failed=$(awk '/^requests:/ {print $10 + 0}' "$work/$1-$3.out"); local non2xx; non2xx=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$work/$1-$3.out")
  local rps
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$work/$1-$3.out")
  failed=$((failed + non2xx))
  echo "$1 round $3: $rps req/s, failed or non-2xx $failed" >&2
  echo "$1 $3 $rps $failed $log" >>"$work/results"
}

# Warm-up, then alternate.
h2load --h1 -n 2000 -c 8 -d "$body" -H 'content-type: application/json' "https://127.0.0.1:9443/$endpoint" >/dev/null
h2load --h1 -n 2000 -c 8 -d "$body" -H 'content-type: application/json' "https://127.0.0.1:9444/$endpoint" >/dev/null
for r in $(seq "$rounds"); do
  run floor 9443 "$r"
  run kadmit 9444 "$r"
done

python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]
summary = {}
for name, rnd, rps, failed, log in rows:
    lat = [int(line.split()[2]) for line in open(log) if line.strip()]
    summary.setdefault(name, []).append((float(rps), pct(lat, 50), pct(lat, 99), int(failed)))
med = {}
for name, runs in summary.items():
    med[name] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
    failed = sum(r[3] for r in runs)
    print(f"{name:7} median of {len(runs)}: {med[name][0]:9.0f} req/s  p50 {med[name][1]/1000:6.2f} ms  p99 {med[name][2]/1000:6.2f} ms  failed {failed}")
f, k = med["floor"], med["kadmit"]
print(f"ratio kadmit/floor: throughput {k[0]/f[0]:.3f}  p50 {k[1]/f[1]:.3f}  p99 {k[2]/f[2]:.3f}")
PY
