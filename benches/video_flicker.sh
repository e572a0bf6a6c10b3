#!/usr/bin/env bash
# Flicker of `impasto video` against the same frames stylised one by one with `impasto
# stylize`, on a sequence of known motion over a real photo (examples/moving_frames.rs:
# tests/data/video/chelsea.jpg), both on the CPU engine with the shipped block1-3 weights;
# then the temporal warping error of each and how stylised each is (examples/warp_error.rs).
# docs/video.md has the figures.
#
#   bash benches/video_flicker.sh pan|turn A|B [impasto video's flags...]
#
# pan: 3 px right and 1 px down a frame; turn: 1.5° and 2 % zoom a frame; 8 frames of 96x64
# (FRAMES, WIDTH and HEIGHT change them). GIF=PATH also writes the animation of both side by
# side (frame by frame left), and STRIP=PATH a still of four of their frames.
# A: the style weight 1e3, content block3_conv2, style block1_conv1,block2_conv1,block3_conv1;
# B: the style weight 1e5, content block2_conv2, style block1_conv2,block2_conv2,block3_conv4.
set -euo pipefail
cd "$(dirname "$0")/.."
sequence="${1:-pan}" setting="${2:-A}"
shift 2 || true
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --bin impasto --example warp_error --example moving_frames
bin=target/release/impasto
case "$sequence" in
  pan) motion=(3 1 0 1) ;;
  turn) motion=(0 0 1.5 1.02) ;;
  *) echo "pan or turn" >&2; exit 2 ;;
esac
frames="${FRAMES:-8}" width="${WIDTH:-96}" height="${HEIGHT:-64}"
target/release/examples/moving_frames tests/data/video/chelsea.jpg "$work/frames" "$width" "$height" "$frames" "${motion[@]}"
case "$setting" in
  A) layers=(--style-weight 1e3 --content-layers block3_conv2 --style-layers block1_conv1,block2_conv1,block3_conv1) ;;
  B) layers=(--style-weight 1e5 --content-layers block2_conv2 --style-layers block1_conv2,block2_conv2,block3_conv4) ;;
  *) echo "A or B" >&2; exit 2 ;;
esac
common=(--engine cpu --weights weights/vgg19-keras-block1-3.safetensors
  --style docs/images/starry_night.jpg "${layers[@]}" --size "$width" --steps 100)
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work}"
# CACHE=DIR keeps the frame-by-frame results there for the next run of the same sequence and
# setting (a sweep of video's flags).
single="${CACHE:+$CACHE/$sequence-$setting-$width-$frames}"
single="${single:-$work/single}"
mkdir -p "$single"
t0=$(date +%s.%N)
for f in "$work"/frames/*.png; do
  [ -f "$single/$(basename "$f")" ] ||
    "$bin" stylize "${common[@]}" --content "$f" --output "$single/$(basename "$f")" 2>/dev/null
done
t1=$(date +%s.%N)
"$bin" video "${common[@]}" --content "$work/frames" --output "$work/video" --report "$work/video.json" "$@" 2>/dev/null
if [ -n "${KEEP:-}" ]; then rm -rf "$KEEP"; cp -r "$work" "$KEEP"; fi
t2=$(date +%s.%N)
read -r e0 s0 < <(target/release/examples/warp_error "$work/frames" "$single")
read -r e1 s1 < <(target/release/examples/warp_error "$work/frames" "$work/video")
ratio() { echo "$1 / $2" | bc -l | cut -c1-4; }
echo "$sequence $setting, frame by frame: warping error $e0, stylisation $s0, $(ratio "($t1 - $t0)" "$frames") s a frame"
echo "$sequence $setting, impasto video $*: warping error $e1 ($(ratio "$e1" "$e0") of frame by frame), stylisation $s1 ($(ratio "$s1" "$s0")), $(ratio "($t2 - $t1)" "$frames") s a frame"
if [ -n "${GIF:-}" ]; then
  ffmpeg -v error -y -framerate 4 -i "$single/f%02d.png" -framerate 4 -i "$work/video/f%02d.png" \
    -filter_complex "[0][1]hstack=inputs=2,scale=iw*3/2:-1:flags=lanczos,split[a][b];[a]palettegen=max_colors=128[p];[b][p]paletteuse=dither=bayer" \
    -loop 0 "$GIF"
fi
if [ -n "${STRIP:-}" ]; then
  last=$((frames - 1)) picks=""
  for i in 0 $((last / 3)) $((2 * last / 3)) "$last"; do picks="$picks+eq(n\,$i)"; done
  ffmpeg -v error -y -i "$single/f%02d.png" -i "$work/video/f%02d.png" -filter_complex \
    "[0]select='${picks#+}',tile=4x1[a];[1]select='${picks#+}',tile=4x1[b];[a][b]vstack" \
    -frames:v 1 -q:v 3 "$STRIP"
fi
