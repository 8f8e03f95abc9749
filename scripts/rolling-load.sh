#!/usr/bin/env bash
# Rolling operations at full load, measured with h2load against a release build with every
# policy on (scripts/bench-full-policies.yaml, scripts/bench-cluster.yaml), over HTTP/1.1
# (8 connections) and HTTP/2 (8 connections, 10 streams each):
#
# - rotation: h2load runs for SECONDS while the serving certificate is replaced twice, each
#   time by a pair from a new CA, the way the kubelet updates a secret volume (..data swap);
# - SIGTERM: h2load runs for SECONDS and the server is sent SIGTERM a third of the way in, with
#   a --shutdown-delay longer than the rest of the run: it reports not ready and keeps serving,
#   asking HTTP/1.1 clients to reconnect after each answer, then drains and exits 0.
#   (Behind a Service, new connections would reach another replica once readiness is seen;
#   tests/rolling_load.rs covers that hand-over with two replicas and a stand-in proxy.)
#
# Prints h2load's request counts (total, succeeded, failed, errored, non-2xx) and req/s for each
# run, and exits non-zero if any request failed.
#
#   scripts/rolling-load.sh [SECONDS]      (default 15)
#
# Needs h2load (Debian: nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
third=$((seconds / 3))
shared=${KADMIT_SHARED_DIR:-../shared}
body=$shared/bench/pod-review.json
command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 2; }
cargo build --release --quiet

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Three pairs, each from its own CA.
for n in 1 2 3; do
  target/release/kadmit certs --out-dir "$work/pair$n" >/dev/null 2>&1
done
volume=$work/volume
mkdir "$volume"
# The kubelet's update: a new timestamped directory, then ..data swapped to it atomically.
install_pair() {
  local dir
  dir=$volume/..$(date +%s%N)
  mkdir "$dir"
  cp "$work/pair$1/tls.crt" "$work/pair$1/tls.key" "$dir/"
  ln -sfn "$(basename "$dir")" "$volume/..data_tmp"
  mv -T "$volume/..data_tmp" "$volume/..data"
}
install_pair 1
ln -s ..data/tls.crt "$volume/tls.crt"
ln -s ..data/tls.key "$volume/tls.key"

start() { # extra serve flags
  target/release/kadmit --log-level info serve --bind 127.0.0.1:9446 --metrics-bind 127.0.0.1:9083 \
    --config scripts/bench-full-policies.yaml --cluster scripts/bench-cluster.yaml \
    --tls-cert-file "$volume/tls.crt" --tls-private-key-file "$volume/tls.key" \
    --cert-reload-interval 200ms "$@" 2>>"$work/kadmit.log" &
  pid=$!
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:9083/readyz >/dev/null && return
    sleep 0.1
  done
  echo "kadmit did not get ready" >&2
  cat "$work/kadmit.log" >&2
  exit 1
}

status=0
load() { # name proto-flags...
  local name=$1
  shift
  h2load "$@" -D "$seconds" -c 8 -d "$body" -H 'content-type: application/json' \
    https://127.0.0.1:9446/validate >"$work/h2load.out" 2>&1 || true
  local requests codes rps
  requests=$(grep '^requests:' "$work/h2load.out")
  codes=$(grep '^status codes:' "$work/h2load.out")
  rps=$(awk '/^finished in/ {print $4, $5}' "$work/h2load.out")
  echo "$name: $requests | $codes | $rps"
  local failed errored non2xx
  # "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
  failed=$(awk '/^requests:/ {print $10}' "$work/h2load.out")
  errored=$(awk '/^requests:/ {print $12}' "$work/h2load.out")
  non2xx=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$work/h2load.out")
  if [ "${failed:-1}" != 0 ] || [ "${errored:-1}" != 0 ] || [ "${non2xx:-1}" != 0 ]; then
    echo "$name: FAILED requests" >&2
    cat "$work/h2load.out" >&2
    status=1
  fi
}

for proto in "--h1" "-m 10"; do
  label=HTTP/1.1
  [ "$proto" = "-m 10" ] && label=HTTP/2
  # shellcheck disable=SC2086
  {
    : >"$work/kadmit.log"
    install_pair 1
    start
    ( sleep "$third"; install_pair 2; sleep "$third"; install_pair 3 ) &
    rotator=$!
    load "rotation, $label" $proto
    wait "$rotator"
    reloads=$(grep -c "serving certificate reloaded" "$work/kadmit.log" || true)
    echo "  certificate reloads logged: $reloads"
    [ "$reloads" = 2 ] || status=1
    kill -TERM "$pid"; wait "$pid" || true; pid=

    : >"$work/kadmit.log"
    start --shutdown-delay "$((seconds + 5))s" --shutdown-grace-period 10s
    ( sleep "$third"; kill -TERM "$pid" ) &
    load "SIGTERM during the run, $label" $proto
    started=$(date +%s)
    code=0
    wait "$pid" || code=$?
    pid=
    echo "  exit status $code, $(( $(date +%s) - started )) s after h2load finished"
    [ "$code" = 0 ] || status=1
  }
done
exit $status
