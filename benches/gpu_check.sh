#!/usr/bin/env bash
# The whole GPU check as one prepared run, for a task lent a GPU machine through the device
# tool (15 minutes in all: build nothing there).
#
# Here, with Rust:   bash benches/gpu_check.sh prepare
#   builds the release binary and the kernel/network test binaries into .gpu/ and downloads the
#   Vulkan loader packages into .gl/ (both ignored by git).
# There:             device run, carry [".gl", ".gpu"], timeout_s 540:
#   bash benches/gpu_check.sh run
#   checks every kernel against the CPU reference on the real GPU (the variants on cooperative
#   matrices too, where the driver offers them), times every kernel variant (impasto tune, f32
#   and f16, then mixed precision: the tensor-core variants with their error against f32), then
#   the 512-px step with the default layers in the tuned variants (checked and unchecked
#   shaders) against PyTorch + CUDA (strict fp32, then TF32 as its default, then TF32 with
#   channels-last and cudnn.benchmark; mixed precision beside TF32), prints the
#   memory plans up to 3840x2160 (--dry-run), the tiled step (--tile) against the untiled one
#   at 2048 px and the 8K UHD plan and 2 steps in tiles, and times Adam, L-BFGS and coarse to
#   fine at 512 px; the log lands in $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    set -e
    cargo build --release
    rm -rf .gpu && mkdir -p .gpu
    cp target/release/impasto .gpu/
    # The test executables (cargo prints their paths as JSON).
    cargo test --release --no-run --message-format=json --test kernels --test network |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])' | xargs -I{} cp {} .gpu/
    if [ ! -d .gl ]; then
        grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
        mkdir -p .gl /tmp/amd64/partial
        o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        apt-get $o update
        (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    du -sh .gpu .gl
}

run() {
    local log="${OUT:-/tmp}/gpu_check.log"
    exec > >(tee "$log") 2>&1
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    fi
    export PYTHONUNBUFFERED=1 IMPASTO_ADAPTER="${IMPASTO_ADAPTER:-}"
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    .gpu/impasto devices
    echo "== kernels and network against the CPU reference, on this GPU"
    for t in .gpu/kernels-* .gpu/network-*; do timeout 120 "$t" --test-threads 1 2>&1 | grep -E "error|test result|FAIL|panicked"; done
    # The tuning cache lives here for the run: the check starts from none.
    export XDG_CACHE_HOME=/tmp/impasto-cache
    echo "== impasto tune, 512 px, default layers, f32 and f16: every variant's conv and Gram time"
    for st in f32 f16; do
        timeout 150 .gpu/impasto tune --size 512 --steps 5 --storage "$st"
    done
    echo "== impasto tune --precision mixed, 512 px: the tensor-core variants (cooperative matrices), their check against f32 first"
    timeout 120 .gpu/impasto tune --size 512 --steps 5 --precision mixed
    echo "== PyTorch CUDA TF32 (its default) vs impasto mixed precision (tensor cores both), 512 px, default layers"
    timeout 120 python3 benches/compare_pytorch.py --size 512 --steps 10 --device cuda \
        --impasto-bin .gpu/impasto --storage f32 --tf32 --precision mixed
    for run in "tuned f32 0" "tuned f32 1" "tuned f16 0" "gemm64 f32 0" "regs8 f32 0"; do
        set -- $run
        echo "== impasto bench, 512 px, default layers, tiling $1, $2 feature maps, IMPASTO_CHECKED_SHADERS=$3"
        local tiling=(--tiling "$1")
        [ "$1" = tuned ] && tiling=()
        IMPASTO_CHECKED_SHADERS=$3 timeout 60 .gpu/impasto bench --size 512 --steps 10 "${tiling[@]}" --storage "$2"
    done
    for st in f32 f16; do
        echo "== PyTorch CUDA fp32 vs impasto (tuned variants, $st feature maps), 512 px, default layers"
        timeout 150 python3 benches/compare_pytorch.py --size 512 --steps 10 --device cuda \
            --impasto-bin .gpu/impasto --storage "$st"
    done
    # PyTorch as users run it: TF32 tensor cores (its default for convolutions), then
    # channels-last with cuDNN's autotuner; impasto's tuned f32 beside each.
    for mode in "--tf32" "--tf32 --channels-last --cudnn-benchmark"; do
        echo "== PyTorch CUDA $mode vs impasto (tuned variants, f32), 512 px, default layers"
        # shellcheck disable=SC2086
        timeout 150 python3 benches/compare_pytorch.py --size 512 --steps 10 --device cuda \
            --impasto-bin .gpu/impasto --storage f32 $mode
    done
    echo "== memory plans (--dry-run), default layers, weights of VGG19's shapes"
    python3 benches/vgg19_zeros.py /tmp/vgg19-zeros.safetensors /tmp/wide.png
    for st in f32 f16; do
        for s in 1024 2048 2896; do
            timeout 60 .gpu/impasto stylize --content docs/images/tubingen.jpg \
                --style docs/images/starry_night.jpg --weights /tmp/vgg19-zeros.safetensors \
                --engine gpu --storage "$st" --size "$s" --dry-run --output /tmp/plan.png
        done
        timeout 60 .gpu/impasto stylize --content /tmp/wide.png --style docs/images/starry_night.jpg \
            --weights /tmp/vgg19-zeros.safetensors --engine gpu --storage "$st" --size 3840 \
            --dry-run --output /tmp/plan.png
    done
    echo "== tiled evaluation (--tile): 2048 px default layers, untiled vs tiles of 1024 and 512, f16"
    for t in "" 1024 512; do
        timeout 90 .gpu/impasto bench --size 2048 --steps 3 --storage f16 ${t:+--tile $t} | tail -3
    done
    echo "== 8K UHD (7680x4320), default layers, f16, tiles of 1024: the plan, then 2 steps"
    timeout 60 .gpu/impasto stylize --content /tmp/wide.png --style /tmp/wide.png \
        --weights /tmp/vgg19-zeros.safetensors --engine gpu --storage f16 --size 7680 --tile 1024 \
        --dry-run --output /tmp/plan.png
    timeout 150 .gpu/impasto stylize --content /tmp/wide.png --style /tmp/wide.png \
        --weights /tmp/vgg19-zeros.safetensors --engine gpu --storage f16 --size 7680 --tile 1024 \
        --steps 2 --log-every 1 --output /tmp/8k.png --report /tmp/8k.json
    grep -o '"peak_gpu_memory_bytes": *[0-9]*' /tmp/8k.json
    echo "== 512 px, shallow layers, 300 evaluations: Adam, L-BFGS, coarse to fine"
    local shallow=(--content docs/images/tubingen.jpg --style docs/images/starry_night.jpg
        --weights weights/vgg19-keras-block1-3.safetensors --content-layers block3_conv2
        --style-layers block1_conv1,block2_conv1,block3_conv1 --engine gpu)
    local at512=(--size 512 --log-every 100)
    timeout 60 .gpu/impasto stylize "${shallow[@]}" "${at512[@]}" --steps 300 --output /tmp/adam.png
    timeout 60 .gpu/impasto stylize "${shallow[@]}" "${at512[@]}" --steps 300 --optimizer lbfgs \
        --output /tmp/lbfgs.png
    timeout 60 .gpu/impasto stylize "${shallow[@]}" "${at512[@]}" --min-size 256 --initial-steps 150 --steps 75 \
        --optimizer lbfgs --output /tmp/c2f.png
    echo "== 2896x2172, shallow layers, 3 steps, f32 and f16 (maps bound in pieces where needed)"
    for st in f32 f16; do
        timeout 60 .gpu/impasto stylize "${shallow[@]}" --size 2896 --steps 3 --log-every 1 \
            --storage "$st" --output /tmp/big.png --report /tmp/big-$st.json
        grep -o '"peak_gpu_memory_bytes": *[0-9]*' /tmp/big-$st.json
    done
    date -u
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash benches/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac
