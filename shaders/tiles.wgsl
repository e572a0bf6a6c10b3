// The tiled evaluation's data movement (issue 22; the geometry: model/tiles.rs): a tile's
// crop of the image, the crop's input gradient added back into the image's, rectangles of
// feature maps copied between a crop's maps and the whole image's, and sums over tiles.
// Crop row 0 is image row y_base, and rows wrap around past the last (`--seamless` halos).

struct TileParams {
    h: u32,         // the image's rows and columns
    w: u32,
    ch: u32,        // the crop's rows and columns (copy_rect: the rectangle's)
    cw: u32,
    y_base: u32,    // the image row and column of the crop's first
    x_base: u32,
    len: u32,       // add_into, zero: elements; copy_rect: channels
    first: u32,     // add_into: 1 overwrites instead of adding (the first tile)
    src_w: u32,     // copy_rect: the source map's columns, plane, first element in the bound
    src_plane: u32, // piece, and the rectangle's first row and column in it
    src_base: u32,
    sy: u32,
    sx: u32,
    dst_w: u32,     // the same of the destination map
    dst_plane: u32,
    dst_base: u32,
    dy: u32,
    dx: u32,
    // crop_image, add_crop_gradient: the planes this dispatch covers start at plane c0, and at
    // element image_base of the bound range of the image (or its gradient; zero: of total),
    // which is bound a range of planes at a time when too large to bind whole.
    c0: u32,
    image_base: u32,
}

// Element types of the feature maps: the host rewrites these to f16 for 16-bit storage
// (gpu::specialise); arithmetic stays f32.
alias Src = f32;
alias Dst = f32;

@group(0) @binding(0) var<uniform> p: TileParams;
// The RGB image [3][h][w] (crop_image reads it).
@group(0) @binding(1) var<storage, read> image: array<f32>;
// A tile's crop of it, [3][ch][cw].
@group(0) @binding(2) var<storage, read_write> crop: array<f32>;
// dL/d(crop), [3][ch][cw] (add_crop_gradient reads it).
@group(0) @binding(3) var<storage, read> crop_grad: array<f32>;
// dL/d(image), [3][h][w], where the crops' gradients add up.
@group(0) @binding(4) var<storage, read_write> grad_image: array<f32>;
// copy_rect's feature maps (a range of their channels when too large to bind whole).
@group(0) @binding(5) var<storage, read> src: array<Src>;
@group(0) @binding(6) var<storage, read_write> dst: array<Dst>;
// add_into: one tile's values, and their sum over the tiles so far.
@group(0) @binding(7) var<storage, read> part: array<f32>;
@group(0) @binding(8) var<storage, read_write> total: array<f32>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// Element i of `len` planes of ch x cw rows and columns: its plane, row and column.
fn in_rect(i: u32) -> vec3<u32> {
    let plane = p.ch * p.cw;
    return vec3<u32>(i / plane, (i % plane) / p.cw, i % p.cw);
}

// One invocation a crop element of the planes c0.. bound (x, folded into y past the dispatch
// limit); `len`: how many planes.
@compute @workgroup_size(64, 1, 1)
fn crop_image(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.len * p.ch * p.cw) {
        return;
    }
    let e = in_rect(i);
    let at = (e.x * p.h + (p.y_base + e.y) % p.h) * p.w + (p.x_base + e.z) % p.w;
    crop[p.c0 * p.ch * p.cw + i] = image[p.image_base + at];
}

// One invocation an image element the crop covers (of the planes c0.. bound): the crop
// elements that wrap onto it (more than one only when a crop is larger than the image) added
// in a fixed order, so no two invocations write one element.
@compute @workgroup_size(64, 1, 1)
fn add_crop_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    let ny = min(p.ch, p.h);
    let nx = min(p.cw, p.w);
    if (i >= p.len * ny * nx) {
        return;
    }
    let c = i / (ny * nx);
    let yy = (i % (ny * nx)) / nx;
    let xx = i % nx;
    var s = 0.0;
    for (var y = yy; y < p.ch; y += p.h) {
        for (var x = xx; x < p.cw; x += p.w) {
            s += crop_grad[((p.c0 + c) * p.ch + y) * p.cw + x];
        }
    }
    let at = (c * p.h + (p.y_base + yy) % p.h) * p.w + (p.x_base + xx) % p.w;
    grad_image[p.image_base + at] += s;
}

// One invocation an element of the rectangle (len channels of ch x cw).
@compute @workgroup_size(64, 1, 1)
fn copy_rect(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.len * p.ch * p.cw) {
        return;
    }
    let e = in_rect(i);
    let at = p.src_base + e.x * p.src_plane + (p.sy + e.y) * p.src_w + p.sx + e.z;
    dst[p.dst_base + e.x * p.dst_plane + (p.dy + e.y) * p.dst_w + p.dx + e.z] = Dst(f32(src[at]));
}

@compute @workgroup_size(64, 1, 1)
fn add_into(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    total[i] = select(total[i], 0.0, p.first != 0u) + part[i];
}

@compute @workgroup_size(64, 1, 1)
fn zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i < p.len) {
        total[p.image_base + i] = 0.0;
    }
}
