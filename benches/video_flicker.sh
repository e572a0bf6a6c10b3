#!/usr/bin/env bash
# Flicker of `impasto video` against the same frames stylised one by one with `impasto
# stylize`: a 12-frame pan across docs/images/tubingen.jpg (a 160x120 window moving 5 px a
# frame, cut by ffmpeg), both on the CPU engine with the shallow layers, then the temporal
# warping error of each (examples/warp_error.rs). docs/video.md has the figures.
#
#   bash benches/video_flicker.sh [TEMPORAL_WEIGHT [FRAME_STEPS [STEPS]]]
set -euo pipefail
cd "$(dirname "$0")/.."
lambda="${1:-1e12}" frame_steps="${2:-50}" steps="${3:-100}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --bin impasto --example warp_error
bin=target/release/impasto
mkdir -p "$work/pan" "$work/single"
for i in $(seq 0 11); do
  ffmpeg -v error -y -i docs/images/tubingen.jpg -vf "crop=160:120:$((10 + 5 * i)):30" \
    "$work/pan/f$(printf %02d "$i").png"
done
common=(--engine cpu --weights weights/vgg19-keras-block1-3.safetensors
  --style docs/images/starry_night.jpg --content-layers block3_conv2
  --style-layers block1_conv1,block2_conv1,block3_conv1 --style-weight 1e3 --size 160)
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work}"
t0=$(date +%s.%N)
for f in "$work"/pan/*.png; do
  "$bin" stylize "${common[@]}" --content "$f" --steps "$steps" --output "$work/single/$(basename "$f")" 2>/dev/null
done
t1=$(date +%s.%N)
"$bin" video "${common[@]}" --content "$work/pan" --steps "$steps" --frame-steps "$frame_steps" \
  --temporal-weight "$lambda" --output "$work/video" --report "$work/video.json" 2>/dev/null
t2=$(date +%s.%N)
single=$(target/release/examples/warp_error "$work/pan" "$work/single")
video=$(target/release/examples/warp_error "$work/pan" "$work/video")
echo "frame by frame ($steps steps each): warping error $single, $(echo "($t1 - $t0) / 12" | bc -l | cut -c1-5) s a frame"
echo "impasto video (λ $lambda, $steps then $frame_steps steps): warping error $video ($(echo "$video / $single" | bc -l | cut -c1-5) of frame by frame), $(echo "($t2 - $t1) / 12" | bc -l | cut -c1-5) s a frame"
