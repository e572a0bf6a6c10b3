// A style mask applied to a feature map: dst = src ∘ m, or src ∘ m² (`squared`), where m has
// one value per position and multiplies every channel alike. The masked Gram matrix is the
// Gram of src ∘ m; the masked style gradient is the unmasked one of src ∘ m² (model::style).

struct MaskParams {
    positions: u32, // M: values of one channel (and of the mask)
    len: u32,       // elements this dispatch writes: a range of whole channels
    src_base: u32,  // where the range starts in the bound piece of src (and of dst)
    dst_base: u32,
    squared: u32,   // 1: multiply by m²
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element types of the feature maps: the host rewrites these to f16 for 16-bit storage
// (gpu::specialise); arithmetic stays f32.
alias Src = f32;
alias Dst = f32;

@group(0) @binding(0) var<uniform> p: MaskParams;
// The layer's output F, [N][M] (a range of its channels when too large to bind whole).
@group(0) @binding(1) var<storage, read> src: array<Src>;
// The mask at the layer's resolution, [M].
@group(0) @binding(2) var<storage, read> mask: array<f32>;
// F ∘ m (or F ∘ m²), laid out as src.
@group(0) @binding(3) var<storage, read_write> dst: array<Dst>;

// One invocation an element (x, folded into y past the dispatch limit).
@compute @workgroup_size(64, 1, 1)
fn mask_features(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) {
        return;
    }
    // Ranges start at a channel boundary, so i's position is i mod M.
    let m = mask[i % p.positions];
    let f = select(m, m * m, p.squared != 0u);
    dst[p.dst_base + i] = Dst(f32(src[p.src_base + i]) * f);
}
