#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/: review, pod, manifest) for a set time, all at
# once, seeded with the published reviews and the upstream Pod Security fixtures from ../shared;
# prints each target's executions and the total. `review` takes whole review bodies (decoding,
# every policy, the pipeline, the patch, the answer's JSON); `pod` takes a pod object and runs
# each policy alone and then all of them; `manifest` takes `kadmit check`'s input.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 300 s, every target)
#
# A crash stops its target and leaves the input in fuzz/artifacts/<target>/. Minimize it
# (`cargo fuzz tmin <target> <file>`), add it to fuzz/regressions/<target>/ under a name that
# says what it broke (crates/kadmit-core/tests/invariants.rs runs every file there), and fix.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(review pod manifest)
shared=${KADMIT_SHARED_DIR:-../shared}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes unstable rustc flags; the machine's one toolchain is stable, and these
# flags are safe to use there.
export RUSTC_BOOTSTRAP=1

corpus=$(mktemp -d)
logs=$(mktemp -d)
trap 'rm -rf "$corpus" "$logs"' EXIT
if [ -d "$shared/conformance" ]; then
  python3 - "$shared/conformance" "$corpus" <<'PY'
import json, os, pathlib, sys
shared, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(out / "review").mkdir(); (out / "pod").mkdir(); (out / "manifest").mkdir()
n = 0
for path in sorted(shared.rglob("*")):
    if not path.is_file():
        continue
    n += 1
    if path.suffix == ".json" and "reviews" in path.parts:
        (out / "review" / f"{n}.json").write_bytes(path.read_bytes())
        try:
            request = json.loads(path.read_text()).get("request") or {}
        except Exception:
            continue
        if (request.get("kind") or {}).get("kind") == "Pod" and isinstance(request.get("object"), dict):
            (out / "pod" / f"{n}.json").write_text(json.dumps(request["object"]))
    elif path.suffix in (".yaml", ".yml"):
        text = path.read_text()
        (out / "manifest" / f"{n}.yaml").write_text(text)
        if "psa" in path.parts:
            # The fixture as the object of a pod CREATE review.
            try:
                import yaml
                pod = yaml.safe_load(text)
            except Exception:
                continue
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "request": {"uid": "fixture", "operation": "CREATE", "namespace": "shop",
                                  "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                  "resource": {"group": "", "version": "v1", "resource": "pods"},
                                  "userInfo": {"username": "fixture"}, "object": pod}}
            (out / "review" / f"{n}.json").write_text(json.dumps(review))
            (out / "pod" / f"{n}.json").write_text(json.dumps(pod))
PY
else
  echo "note: $shared is absent; fuzzing from empty corpora" >&2
fi
for target in "${targets[@]}"; do
  mkdir -p "$corpus/$target" "fuzz/regressions/$target"
  # Earlier finds are seeds too.
  find "fuzz/regressions/$target" -type f ! -name '.gitkeep' -exec cp {} "$corpus/$target/" \;
done

cd fuzz
for target in "${targets[@]}"; do
  cargo fuzz build -s none "$target" >/dev/null
done
pids=()
for target in "${targets[@]}"; do
  cargo fuzz run -s none "$target" "$corpus/$target" -- -max_total_time="$seconds" \
    -print_final_stats=1 -max_len=1048576 -timeout=10 -rss_limit_mb=4096 \
    >"$logs/$target.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  if ! wait "${pids[$i]}"; then
    status=1
    echo "${targets[$i]}: FAILED (see the log below)" >&2
    tail -40 "$logs/${targets[$i]}.log" >&2
  fi
done
total=0
for target in "${targets[@]}"; do
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$logs/$target.log" | tail -1)
  runs=${runs:-0}
  total=$((total + runs))
  echo "$target: $runs executions in ${seconds}s"
done
echo "total: $total executions"
exit $status
