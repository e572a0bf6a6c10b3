// The weights' input convention as a per-channel affine map of the RGB image x in [0, 1]:
//   net[c] = x[source[c]] · mul[c] − sub[c]
// caffe: source = (2, 1, 0) (BGR), mul = 255, sub = the BGR mean;
// torch: source = (0, 1, 2), mul = 1/std, sub = mean/std.
// The backward writes dx[source[c]] = mul[c] · dnet[c] (source is a permutation).

struct PreParams {
    mul: vec4<f32>,
    sub: vec4<f32>,
    source: vec4<u32>,
    hw: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (gpu::specialise); arithmetic stays f32.
alias Input = f32;
// dL/d(network input), f16 too with 16-bit storage.
alias Grad = f32;

@group(0) @binding(0) var<uniform> p: PreParams;
// preprocess: the image x, RGB [3][h][w] in [0, 1].
@group(0) @binding(1) var<storage, read> image: array<f32>;
// preprocess: the network's input [3][h][w].
@group(0) @binding(2) var<storage, read_write> input: array<Input>;
// preprocess_backward: dL/d(network input).
@group(0) @binding(3) var<storage, read> grad_input: array<Grad>;
// preprocess_backward: dL/dx.
@group(0) @binding(4) var<storage, read_write> grad_image: array<f32>;
// preprocess_backward, grad_scale_update: the gradient scale's state, as bits:
//   [scale, 1 / scale (f32s), overflow (a step's gradient was not finite), steps skipped].
// The loss gradients are multiplied by the scale (a power of two) so that 16-bit gradients
// neither overflow nor lose their small values; preprocess_backward undoes it and raises the
// overflow flag when dL/dx is not finite (an f16 store past its range stores infinity); Adam
// then skips the step, and grad_scale_update halves the scale.
@group(0) @binding(5) var<storage, read_write> grad_scale: array<atomic<u32>>;

const SCALE: u32 = 0u;
const INVERSE: u32 = 1u;
const OVERFLOW: u32 = 2u;
const SKIPPED: u32 = 3u;

// Element i of the network input is channel c = i / hw, pixel q = i % hw; it comes from
// element source[c]·hw + q of the image. vec2(i, image index), or i = 3·hw past the end.
fn indices(gid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let i = min(gid.x + gid.y * nwg.x * 64u, 3u * p.hw);
    let c = min(i / p.hw, 2u);
    return vec2<u32>(i, p.source[c] * p.hw + i % p.hw);
}

@compute @workgroup_size(64, 1, 1)
fn preprocess(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ix = indices(gid, nwg);
    if (ix.x < 3u * p.hw) {
        let c = ix.x / p.hw;
        input[ix.x] = Input(image[ix.y] * p.mul[c] - p.sub[c]);
    }
}

@compute @workgroup_size(64, 1, 1)
fn preprocess_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ix = indices(gid, nwg);
    if (ix.x < 3u * p.hw) {
        let inverse = bitcast<f32>(atomicLoad(&grad_scale[INVERSE]));
        let g = f32(grad_input[ix.x]) * inverse * p.mul[ix.x / p.hw];
        // Infinity or NaN: every exponent bit set (compilers may assume finite floats).
        if ((bitcast<u32>(g) & 0x7f800000u) == 0x7f800000u) {
            atomicOr(&grad_scale[OVERFLOW], 1u);
        }
        grad_image[ix.y] = g;
    }
}

// After a step: on overflow, halve the scale, count the skipped step and lower the flag.
@compute @workgroup_size(1, 1, 1)
fn grad_scale_update() {
    if (atomicLoad(&grad_scale[OVERFLOW]) != 0u) {
        let s = bitcast<f32>(atomicLoad(&grad_scale[SCALE]));
        let inv = bitcast<f32>(atomicLoad(&grad_scale[INVERSE]));
        atomicStore(&grad_scale[SCALE], bitcast<u32>(0.5 * s));
        atomicStore(&grad_scale[INVERSE], bitcast<u32>(2.0 * inv));
        atomicAdd(&grad_scale[SKIPPED], 1u);
        atomicStore(&grad_scale[OVERFLOW], 0u);
    }
}
