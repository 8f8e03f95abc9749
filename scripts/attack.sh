#!/usr/bin/env bash
# Issue 27's attacks on a release build of `kadmit serve`, every policy on, default limits, with
# a normal client beside them: (1, 3) sixteen 3 MiB worst-case reviews at once on both endpoints,
# in rounds, while /healthz is polled; (2) stalled uploads that declare 8 MiB and send one byte;
# (4) idle TLS connections to the webhook and half-sent `GET /metr` on the metrics port. For
# each it prints what the attackers got, the normal client's answers and p99, the slowest
# /healthz, and kadmit's peak RSS (VmHWM). Standard library Python only.
#
#   scripts/attack.sh [-- attack.py flags: --rounds N --stalled N --idle N --hold SECONDS]
#   scripts/attack.sh -- --stalled 1000 --idle 1000      # the defaults
#
# Run it with `ulimit -n` high enough for the connections it opens (it raises its own soft
# limit to the hard one); kadmit runs with the same limit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--" ] && shift
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

target/release/kadmit certs --service kadmit --namespace kadmit --out-dir "$work" >/dev/null
target/release/kadmit --log-level warn serve --bind 127.0.0.1:9449 --metrics-bind 127.0.0.1:9086 \
  --config scripts/bench-full-policies.yaml --cluster scripts/bench-cluster.yaml \
  --tls-cert-file "$work/tls.crt" --tls-private-key-file "$work/tls.key" \
  >/dev/null 2>"$work/kadmit.log" &
pid=$!
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9086/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
echo "kadmit $(target/release/kadmit --version 2>/dev/null || true) pid $pid, ulimit -n $(ulimit -n)"
python3 scripts/attack.py --port 9449 --metrics-port 9086 --ca "$work/ca.crt" --pid "$pid" "$@"
echo "== after the attacks"
curl -s http://127.0.0.1:9086/metrics | grep -E '^kadmit_(admission_requests_rejected_total|connections_refused_total|admission_deadline_expired_total)' || true
grep -c . "$work/kadmit.log" | sed 's/^/log lines at warn and above: /'
