#!/usr/bin/env bash
# The pictures, times and scores of docs/quality.md: the Gram and W2 style losses with equal
# and crowsonkb-style layer weights, then the presets, on the docs' photo and painting with the
# shipped block1-3 weights (CPU engine). Usage: bash benches/quality.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/quality}"
mkdir -p "$out"
cargo build --release -q
bin=target/release/impasto
common=(--content docs/images/tubingen.jpg --style docs/images/starry_night.jpg
  --weights weights/vgg19-keras-block1-3.safetensors --content-layers block3_conv2
  --style-layers block1_conv1,block2_conv1,block3_conv1 --engine cpu --log-every 50)
run() {
  local name="$1"; shift
  "$bin" stylize "${common[@]}" "$@" --output "$out/$name.png" --report "$out/$name.json" >/dev/null 2>&1
  python3 - "$out/$name.json" "$name" "$*" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["score"]
print(f"| {sys.argv[2]} | `{sys.argv[3]}` | {r['optimise_seconds']:.1f} s | {s['content']:.3f} | {s['style']:.0f} |")
PY
}
echo "| picture | flags | time | content score | style score |"
echo "| --- | --- | --- | --- | --- |"
run gram --size 256 --steps 200
run gram-ck --size 256 --steps 200 --style-layer-weights 16,4,1
run w2 --size 256 --steps 200 --style-loss w2
run w2-ck --size 256 --steps 200 --style-loss w2 --style-layer-weights 16,4,1
for preset in draft balanced ${PRINT:+print}; do
  run "preset-$preset" --preset "$preset"
done
# The draft brought to balanced's 512 px (Lanczos, no step: --steps 0 writes the start), so
# that the two are scored at one size.
run preset-draft-at-512 --size 512 --steps 0 --init "$out/preset-draft.png"
