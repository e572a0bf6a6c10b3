#!/usr/bin/env bash
# 20 small jobs with one style: `impasto batch` over a manifest (one process, weights read
# once, style targets computed once) against 20 separate `impasto stylize` runs, side by side
# in one run. Prints both wall times, jobs per minute, and each batch job's setup time from
# its report (the first job computes the style targets; the others reuse them).
#   bash benches/batch_vs_stylize.sh [SIZE] [STEPS] [ENGINE]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-128}; steps=${2:-20}; engine=${3:-cpu}
bin=$(pwd)/target/release/impasto
[ -x "$bin" ] || cargo build --release
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cp docs/images/*.jpg "$dir"
common=(--engine "$engine" --weights "$(pwd)/weights/vgg19-keras-block1-3.safetensors"
  --content-layers block3_conv2 --style-layers block1_conv1,block2_conv1,block3_conv1
  --style-weight 1e3 --size "$size" --steps "$steps" --log-every "$steps")
contents=(tubingen.jpg the_scream.jpg)
{
  echo "content,style,output,report"
  for i in $(seq 0 19); do echo "${contents[$((i % 2))]},starry_night.jpg,batch/$i.png,batch/$i.json"; done
} > "$dir/jobs.csv"
cd "$dir"
t0=$(date +%s.%N)
"$bin" batch jobs.csv "${common[@]}" 2>/dev/null
t1=$(date +%s.%N)
for i in $(seq 0 19); do
  "$bin" stylize --content "${contents[$((i % 2))]}" --style starry_night.jpg "${common[@]}" \
    --output "single-$i.png" --report "single-$i.json" 2>/dev/null
done
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" <<'PY'
import json, sys
t0, t1, t2 = map(float, sys.argv[1:])
b, s = t1 - t0, t2 - t1
setup = [json.load(open(f"batch/{i}.json"))["setup_seconds"] for i in range(20)]
single = [json.load(open(f"single-{i}.json"))["setup_seconds"] for i in range(20)]
print(f"batch: {b:.1f} s for 20 jobs ({20 * 60 / b:.1f} jobs/min); 20 stylize runs: {s:.1f} s ({20 * 60 / s:.1f} jobs/min); {s / b:.2f}x")
print(f"setup a job (session and targets): batch first {setup[0]:.3f} s, the others mean {sum(setup[1:]) / 19:.3f} s; stylize runs mean {sum(single) / 20:.3f} s (weights and images read, engine chosen, targets computed)")
PY
