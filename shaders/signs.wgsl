// The signs of a ReLU's output as bits: bit e % 32 of word e / 32 is set when element e is
// positive. A convolution's backward needs its input only as that mask, so a layer that is
// no loss layer and feeds another convolution keeps these bits instead of its output
// (conv_backward_input_bitmask reads them).

struct SignParams {
    len: u32,      // elements of the map
    src_base: u32, // where element word0 · 32 lies in the bound piece of src
    word0: u32,    // the first word this dispatch writes
    words: u32,    // how many
}

// Element type of the feature map: the host rewrites it to f16 for 16-bit storage.
alias Src = f32;

@group(0) @binding(0) var<uniform> p: SignParams;
// The map, from element word0 · 32 (a range of it when it is too large to bind whole).
@group(0) @binding(1) var<storage, read> src: array<Src>;
// The bits, [ceil(len / 32)].
@group(0) @binding(2) var<storage, read_write> bits: array<u32>;

// One invocation a word (x, folded into y past the dispatch limit).
@compute @workgroup_size(64, 1, 1)
fn relu_signs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * 64u;
    if (w >= p.words) {
        return;
    }
    let first = (p.word0 + w) * 32u;
    var word = 0u;
    for (var k = 0u; k < 32u; k++) {
        let e = first + k;
        if (e < p.len && f32(src[p.src_base + e - p.word0 * 32u]) > 0.0) {
            word |= 1u << k;
        }
    }
    bits[p.word0 + w] = word;
}
