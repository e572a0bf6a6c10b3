// A style mask applied to a feature map: dst = src ∘ m, or src ∘ m² (`squared`), where m has
// one value per position and multiplies every channel alike. The masked Gram matrix is the
// Gram of src ∘ m; the masked style gradient is the unmasked one of src ∘ m² (model::style).

struct MaskParams {
    positions: u32, // M: values of one channel (and of the mask)
    len: u32,       // elements this dispatch writes: a range of whole channels
    src_base: u32,  // where the range starts in the bound piece of src (and of dst)
    dst_base: u32,
    squared: u32,   // 1: multiply by m²
    // window_features: the map's columns, the window (rows y0..y1, columns x0..x1 of the
    // map), and where its first row and column lie in the whole image's mask (mask_w columns)
    // when has_mask is 1.
    width: u32,
    y0: u32,
    y1: u32,
    x0: u32,
    x1: u32,
    mask_y: u32,
    mask_x: u32,
    mask_w: u32,
    has_mask: u32,
    _pad0: u32,
    _pad1: u32,
}

// Element types of the feature maps: the host rewrites these to f16 for 16-bit storage
// (gpu::specialise); arithmetic stays f32.
alias Src = f32;
alias Dst = f32;

@group(0) @binding(0) var<uniform> p: MaskParams;
// The layer's output F, [N][M] (a range of its channels when too large to bind whole).
@group(0) @binding(1) var<storage, read> src: array<Src>;
// The mask at the layer's resolution, [M] (window_features: the whole image's mask at the
// layer's resolution, or one unused value).
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

// A tiled evaluation's window (pipeline/tiled.rs): a crop's map times 1 (or the whole image's
// mask) inside the tile's interior and 0 elsewhere, or the square of that (`squared`), so that
// the Gram matrix and the style gradient count each position of the image in one tile only.
@compute @workgroup_size(64, 1, 1)
fn window_features(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.len) {
        return;
    }
    let at = i % p.positions;
    let y = at / p.width;
    let x = at % p.width;
    var m = 0.0;
    if (y >= p.y0 && y < p.y1 && x >= p.x0 && x < p.x1) {
        m = 1.0;
        if (p.has_mask != 0u) {
            m = mask[(p.mask_y + y - p.y0) * p.mask_w + p.mask_x + x - p.x0];
        }
    }
    let f = select(m, m * m, p.squared != 0u);
    dst[p.dst_base + i] = Dst(f32(src[p.src_base + i]) * f);
}
