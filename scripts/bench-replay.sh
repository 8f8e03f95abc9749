#!/usr/bin/env bash
# Replay throughput on one core: the review corpus of ../shared/conformance/reviews (JSON
# documents) repeated into one JSONL file of at least 100 000 documents, replayed with the
# default configuration; prints reviews per second.
#
#   scripts/bench-replay.sh [DOCUMENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-100000}
shared=${KADMIT_SHARED_DIR:-../shared}
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One compact JSON document per line, from every .json file of the corpus that parses.
python3 - "$shared/conformance/reviews" "$work/one.jsonl" <<'PY'
import json, pathlib, sys
out = open(sys.argv[2], "w")
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.json")):
    try:
        doc = json.loads(path.read_text())
    except Exception:
        continue
    out.write(json.dumps(doc, separators=(",", ":")) + "\n")
PY
per=$(wc -l <"$work/one.jsonl")
copies=$(( (target + per - 1) / per ))
for _ in $(seq "$copies"); do cat "$work/one.jsonl"; done >"$work/corpus.jsonl"
docs=$(wc -l <"$work/corpus.jsonl")
start=$(date +%s.%N)
taskset -c 0 target/release/kadmit --log-level error replay --output json "$work/corpus.jsonl" >"$work/out.json" 2>/dev/null || true
end=$(date +%s.%N)
python3 - "$work/out.json" "$docs" "$start" "$end" <<'PY'
import json, sys
entries = json.load(open(sys.argv[1]))
docs, start, end = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
reviews = sum(1 for e in entries if "error" not in e)
secs = end - start
print(f"{docs} documents ({reviews} reviews, {docs - reviews} input errors) in {secs:.2f} s on one core: "
      f"{docs / secs:,.0f} documents/s, {reviews / secs:,.0f} reviews/s")
PY
