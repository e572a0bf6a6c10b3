// 3x3 convolution on cooperative matrices (tensor cores: Vulkan's VK_KHR_cooperative_matrix,
// Metal's simdgroup matrices): conv_gemm.wgsl's implicit GEMM with f16 operands and f32
// accumulation, for --precision mixed. The host puts `enable f16; enable
// wgpu_cooperative_matrix;` and conv_common.wgsl (parameters, bindings, entry points' meaning)
// in front, and rewrites the tile's constants and WG for the adapter (kernels::conv::coop_source).
//
// out[o][q] = Σ_k W[k][o] · X[k][q] over rows k = (tap, reduction channel): C = Wᵀ·X.
// A workgroup owns TC output channels x TP pixels, held as RA x RB accumulators of M x M (the
// matrices' side: 16, or 8 where the adapter offers only that; the host rewrites M, RA, RB
// and the type's name: kernels::Tiling::Cooperative). Each step it stages TK rows of Wᵀ and of X (the input shifted by
// the tap, zero or wrapped in the padding) in workgroup memory as f16 — the maps' and
// weights' f32 rounded: what mixed precision gives up
// (benches/f16_error.py) — and multiplies them on the matrix units.
// A cooperative matrix belongs to one subgroup. The workgroup is one subgroup wide, so
// nothing is computed twice; should the driver split it into smaller subgroups, each computes
// the whole tile and they store the same values. Cooperative operations stay in uniform
// control flow: every branch around them depends on parameters only.
// The epilogue reads the accumulators back through workgroup memory, a value per invocation
// at a time, with conv_gemm.wgsl's fused epilogues (bias and ReLU; the input's mask).

const M: u32 = 16u;       // the cooperative matrices' side (host-set: 8 or 16)
const RA: u32 = 2u;       // accumulators along the channels (host-set)
const RB: u32 = 4u;       // accumulators along the pixels (host-set)
const TC: u32 = RA * M;   // output channels per workgroup (weight rows are padded to it)
const TP: u32 = RB * M;   // pixels per workgroup
const TK: u32 = M;        // reduction rows per staged step: the matrices' K
const WG: u32 = 32u;      // invocations: the adapter's largest subgroup, TP/4 to M·TC/4 (host-set)

// Aᵀ: element (channel o, row k) at k·TC + o, so that A (M channels x M rows) loads
// column-major from &wtile[o0] with stride TC.
var<workgroup> wtile: array<f16, TK * TC>;
// B: element (row k, pixel q) at k·TP + q, loaded row-major from &xtile[q0] with stride TP.
var<workgroup> xtile: array<f16, TK * TP>;
// C: element (channel o, pixel q) at o·TP + q.
var<workgroup> ctile: array<f32, TC * TP>;

// f32 → f16 for the matrix units; past f16's range, infinity (as 16-bit storage saturates),
// so that an overflowing gradient is seen and its scale lowered (kernels::preprocess).
fn half(v: f32) -> f16 {
    if (abs(v) <= 65504.0) {
        return f16(v);
    }
    return f16(select(65504.0, -65504.0, v < 0.0)) * f16(2.0);
}

// The four pixels an invocation stages: quad lid % (TP / 4) of the tile, the same at every
// staging pass (WG is a multiple of TP / 4). Rows past the last pixel are -2.
struct Pixels {
    y: array<i32, 4>,
    x: array<i32, 4>,
}

fn pixels(lid: u32, q0: u32) -> Pixels {
    var s: Pixels;
    for (var j = 0u; j < 4u; j++) {
        let q = q0 + 4u * (lid % (TP / 4u)) + j;
        s.y[j] = select(-2, i32(q / p.w), q < p.h * p.w);
        s.x[j] = i32(q % p.w);
    }
    return s;
}

// The pixels' values in reduction channel r under tap `tap`: the forward (sign 1) reads
// (y + ky - 1, x + kx - 1), the backward (sign -1) gathers from (y + 1 - ky, x + 1 - kx).
fn shifted_quad(s: Pixels, r: u32, tap: u32, sign: i32) -> vec4<f32> {
    let dy = sign * (i32(tap / 3u) - 1);
    let dx = sign * (i32(tap % 3u) - 1);
    let base = p.src_base + r * p.h * p.w;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let yy = padded(s.y[j] + dy, p.h);
        let xx = padded(s.x[j] + dx, p.w);
        if (yy >= 0 && xx >= 0 && s.y[j] >= 0) {
            v[j] = f32(src[base + u32(yy * i32(p.w) + xx)]);
        }
    }
    return v;
}

// Reduction row k0 + k as (tap, channel, inside): with the taps folded into the reduction (few
// channels: the first layer's 3, which a tap at a time would pad to TK) row k is channel
// k % red of tap k / red, else channel k of `tap`.
fn row_of(tap: u32, k: u32, folded: bool) -> vec3<u32> {
    if (folded) {
        return vec3<u32>(k / p.red, k % p.red, u32(k < 9u * p.red));
    }
    return vec3<u32>(tap, k, u32(k < p.red));
}

// Stages rows k0 .. k0 + TK of Wᵀ (output channels c0 .. c0 + TC) and of X.
fn stage(lid: u32, s: Pixels, c0: u32, tap: u32, k0: u32, folded: bool, sign: i32) {
    for (var i = 0u; i < TK * TC / 4u / WG; i++) {
        let e = lid + WG * i;
        let k = e / (TC / 4u);
        let col = c0 / 4u + e % (TC / 4u);
        let row = row_of(tap, k0 + k, folded);
        var wv = vec4<f32>(0.0);
        if (row.z != 0u && p.out0 / 4u + col < p.row_vec4s) {
            wv = weight[weight_index(row.x, row.y, col)];
        }
        let o = k * TC + 4u * (e % (TC / 4u));
        wtile[o] = half(wv.x);
        wtile[o + 1u] = half(wv.y);
        wtile[o + 2u] = half(wv.z);
        wtile[o + 3u] = half(wv.w);
    }
    for (var i = 0u; i < TK * TP / 4u / WG; i++) {
        let e = lid + WG * i;
        let k = e / (TP / 4u);
        let row = row_of(tap, k0 + k, folded);
        var xv = vec4<f32>(0.0);
        if (row.z != 0u) {
            xv = shifted_quad(s, row.y, row.x, sign);
        }
        let q = k * TP + 4u * (e % (TP / 4u));
        xtile[q] = half(xv.x);
        xtile[q + 1u] = half(xv.y);
        xtile[q + 2u] = half(xv.z);
        xtile[q + 3u] = half(xv.w);
    }
}

// The workgroup's tile of C = Wᵀ·X over the reduction channels of this piece and the 9 taps,
// left in ctile.
fn gemm(lid: u32, q0: u32, c0: u32, sign: i32) {
    let s = pixels(lid, q0);
    let folded = p.red < TK;
    let taps = select(9u, 1u, folded);
    let rows = select(p.red, 9u * p.red, folded);
    var acc: array<coop_mat16x16<f32, C>, RA * RB>;
    for (var tap = 0u; tap < taps; tap++) {
        for (var k0 = 0u; k0 < rows; k0 += TK) {
            stage(lid, s, c0, tap, k0, folded, sign);
            workgroupBarrier();
            var b: array<coop_mat16x16<f16, B>, RB>;
            for (var j = 0u; j < RB; j++) {
                b[j] = coopLoadT<coop_mat16x16<f16, B>>(&xtile[j * M], TP);
            }
            for (var i = 0u; i < RA; i++) {
                let a = coopLoad<coop_mat16x16<f16, A>>(&wtile[i * M], TC);
                for (var j = 0u; j < RB; j++) {
                    acc[i * RB + j] = coopMultiplyAdd(a, b[j], acc[i * RB + j]);
                }
            }
            workgroupBarrier();
        }
    }
    for (var i = 0u; i < RA; i++) {
        for (var j = 0u; j < RB; j++) {
            coopStoreT(acc[i * RB + j], &ctile[i * M * TP + j * M], TP);
        }
    }
    workgroupBarrier();
}

// The first pixel and channel of the workgroup's tile: x (+ y past 65535) over pixel tiles,
// z over channel tiles.
fn tile_origin(at: Place) -> vec2<u32> {
    return vec2<u32>((at.wid.x + at.wid.y * at.nwg.x) * TP, at.wid.z * TC);
}

// Value i of an invocation's share of the tile: x its channel in this piece, y its pixel, z
// its place in ctile; w is 1 when it is inside the map (padding is never written).
fn element(lid: u32, i: u32, o: vec2<u32>) -> vec4<u32> {
    let e = lid + WG * i;
    let ch = o.y + e / TP;
    let q = o.x + e % TP;
    return vec4<u32>(ch, q, e, u32(ch < p.outs && q < p.h * p.w));
}

// The tile's value at `t` plus what earlier reduction pieces left in dst.
fn summed(t: vec4<u32>) -> f32 {
    var v = ctile[t.z];
    if ((p.flags & ADD_PREVIOUS) != 0u) {
        v += f32(dst[p.dst_base + t.x * p.h * p.w + t.y]);
    }
    return v;
}

fn put(t: vec4<u32>, v: f32) {
    dst[p.dst_base + t.x * p.h * p.w + t.y] = to_dst(v);
}

@compute @workgroup_size(WG, 1, 1)
fn conv_forward(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    gemm(lid, o.x, o.y, 1);
    for (var i = 0u; i < TC * TP / WG; i++) {
        let t = element(lid, i, o);
        if (t.w != 0u) {
            var v = summed(t);
            if ((p.flags & LAST_PIECE) != 0u) {
                v = max(v + bias[p.out0 + t.x], 0.0);
            }
            put(t, v);
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn conv_backward_input(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    gemm(lid, o.x, o.y, -1);
    for (var i = 0u; i < TC * TP / WG; i++) {
        let t = element(lid, i, o);
        if (t.w != 0u) {
            put(t, summed(t));
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn conv_backward_input_masked(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    gemm(lid, o.x, o.y, -1);
    let last = (p.flags & LAST_PIECE) != 0u;
    for (var i = 0u; i < TC * TP / WG; i++) {
        let t = element(lid, i, o);
        if (t.w != 0u) {
            let off = last && f32(mask[p.mask_base + t.x * p.h * p.w + t.y]) <= 0.0;
            put(t, select(summed(t), 0.0, off));
        }
    }
}

// The masked backward's twin with the input's signs as bits (a twin, not a flag: an entry
// point may use only the bindings it binds).
@compute @workgroup_size(WG, 1, 1)
fn conv_backward_input_bitmask(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    gemm(lid, o.x, o.y, -1);
    let last = (p.flags & LAST_PIECE) != 0u;
    for (var i = 0u; i < TC * TP / WG; i++) {
        let t = element(lid, i, o);
        if (t.w != 0u) {
            let off = last && !positive_bit(p.mask_base + t.x * p.h * p.w + t.y);
            put(t, select(summed(t), 0.0, off));
        }
    }
}
