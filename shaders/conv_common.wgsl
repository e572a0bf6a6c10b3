// The parameters and bindings of the 3x3 convolutions (stride 1, zero padding 1, CHW maps),
// shared by conv.wgsl (register-blocked: the software driver's tiling) and conv_gemm.wgsl
// (workgroup-memory GEMM tiles: real GPUs). The host joins this prelude in front of either
// (kernels/conv.rs), and the tests validate the joined text.
//
// Every entry point convolves `src` with `weight` and writes `dst`:
//   conv_forward:               dst = relu(conv(src, weight) + bias); src is the layer's input.
//   conv_backward_input:        dst = conv_transpose(src, weight); src is dL/d(output), already
//                               masked by this layer's ReLU (whoever writes a gradient fuses
//                               the mask), dst is dL/d(input).
//   conv_backward_input_masked: the same, dst zeroed where `mask` (the layer's input, a ReLU's
//                               output) is not positive, so it leaves masked for the layer below.
//   conv_backward_input_bitmask: the same with the input's signs as bits (signs.wgsl), for a
//                               layer whose input the network keeps only as that mask.
//
// A map too large for one binding is bound a range of channels at a time (kernels::setup):
// a dispatch computes output channels out0 .. out0 + outs from reduction channels red0 ..
// red0 + red, adds what earlier reduction pieces left in dst, and only the last applies the
// epilogue (bias and ReLU; the mask). Each binding's piece starts at its *_base element.

struct ConvParams {
    red: u32,  // reduction channels of this piece: input channels (forward), output (backward)
    outs: u32, // channels written by this piece: output channels (forward), input (backward)
    h: u32,
    w: u32,
    // vec4s per weight row: padded output channels / 4 (forward), padded input channels / 4 (backward)
    row_vec4s: u32,
    red_rows: u32, // all reduction channels: weight rows per tap
    red0: u32,
    out0: u32,
    src_base: u32,
    dst_base: u32,
    mask_base: u32,
    flags: u32, // ADD_PREVIOUS | LAST_PIECE | CIRCULAR
}

const ADD_PREVIOUS: u32 = 1u; // a later reduction piece: add to what dst holds
const LAST_PIECE: u32 = 2u;   // the last reduction piece: apply the epilogue
const CIRCULAR: u32 = 4u;     // circular padding (--seamless): rows and columns wrap around

// Row or column i (from -n to 2n - 1) of a map with n of them as the padding gives it: wrapped
// with circular padding, else itself inside the map and -1 (zero padding) outside it.
fn padded(i: i32, n: u32) -> i32 {
    if ((p.flags & CIRCULAR) != 0u) {
        return (i + i32(n)) % i32(n);
    }
    return select(-1, i, i >= 0 && i < i32(n));
}

// Weight vec4 index: tap t, reduction channel r of this piece, output column (vec4) q of it.
fn weight_index(t: u32, r: u32, q: u32) -> u32 {
    return (t * p.red_rows + p.red0 + r) * p.row_vec4s + p.out0 / 4u + q;
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (gpu::specialise); arithmetic stays f32.
// The backward's src and dst are gradients, f16 too with 16-bit storage.
alias Src = f32;
alias Dst = f32;
alias Mask = f32;

// Stores a value in dst (saturating to infinity past f16's range: gpu::specialise).
fn to_dst(v: f32) -> Dst { return Dst(v); }

@group(0) @binding(0) var<uniform> p: ConvParams;
// The map convolved, [channels][h][w].
@group(0) @binding(1) var<storage, read> src: array<Src>;
// The taps, [ky][kx][channel of src][channel of dst, padded]: Keras HWIO for the forward,
// its transpose for the backward (kernels/conv.rs lays both out).
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;
// conv_forward only: the bias, [cout].
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// The map written, [channels][h][w].
@group(0) @binding(4) var<storage, read_write> dst: array<Dst>;
// conv_backward_input_masked only: the layer's input, [cin][h][w].
@group(0) @binding(5) var<storage, read> mask: array<Mask>;
// conv_backward_input_bitmask only: where the layer's input is positive, 1 bit an element
// (bound whole; element mask_base + i is this piece's element i).
@group(0) @binding(6) var<storage, read> mask_bits: array<u32>;

// Where an invocation of the GEMM tilings' entry points is (conv_gemm.wgsl, conv_coop.wgsl):
// its index in the workgroup, its workgroup and their count (tiles fold x past 65535 into y).
struct Place {
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
}

fn positive_bit(e: u32) -> bool {
    return ((mask_bits[e / 32u] >> (e % 32u)) & 1u) != 0u;
}
