// 3x3 convolution, stride 1, zero padding 1, on CHW f32 maps, as an implicit GEMM with
// workgroup-memory tiles: the variants for real GPUs, where shared memory and barriers are
// cheap (conv.wgsl's register-blocked kernel is the software driver's).
//
// out[o][q] = sum over taps t and reduction channels r of W[t][r][o] · in[r][q shifted by t]
// A workgroup owns TC output channels x TP pixels (of the flattened h·w, so narrow images
// waste nothing); each step it stages TK reduction rows of weights and of the shifted input
// in workgroup memory, and each invocation accumulates RC channels x RP pixels from them.
// The host rewrites the five constants below for each variant (kernels::Tiling): gemm64 is
// 64 x 64 tiles of 4 x 4, the gemm8 variants 64 x 64 or 128 x 64 tiles of 8 x 8 with K
// slices of 8 or 16. Parameters and bindings: conv_common.wgsl, joined in front; weight rows
// are padded to TC channels. The same entry points and fused epilogues as conv.wgsl, and a
// narrow backward for maps of at most 4 channels (the image's gradient).

const TC: u32 = 64u; // output channels per workgroup
const TP: u32 = 64u; // pixels per workgroup
const TK: u32 = 16u; // reduction rows per staged step
const RC: u32 = 4u;  // output channels per invocation (a multiple of 4)
const RP: u32 = 4u;  // pixels per invocation (a multiple of 4)

const NT: u32 = (TC / RC) * (TP / RP); // invocations per workgroup (the host's workgroup size)
const QC: u32 = TC / 4u;               // channel quads of a tile
const QP: u32 = TP / 4u;               // pixel quads of a tile
const CQ: u32 = RC / 4u;               // channel quads of an invocation
const ACC: u32 = RP * CQ;              // vec4 accumulators of an invocation

// [TK][QC] weights and [TK][QP] shifted inputs of one step.
var<workgroup> wtile: array<vec4<f32>, TK * QC>;
var<workgroup> xtile: array<vec4<f32>, TK * QP>;

// acc[j · CQ + c][e]: pixel q0 + px_offset(lid, j), channel c0 + ch_offset(lid, c) + e. An
// invocation's quads are strided across the tile (quad tc + (TC / RC)·c), so that neighbours
// read neighbouring workgroup words.
alias Acc = array<vec4<f32>, ACC>;

fn ch_offset(lid: u32, c: u32) -> u32 {
    return 4u * (lid / (TP / RP) + (TC / RC) * c);
}

fn px_offset(lid: u32, j: u32) -> u32 {
    return 4u * (lid % (TP / RP) + (TP / RP) * (j / 4u)) + j % 4u;
}

// Multiplies the staged step into the invocation's accumulators.
fn multiply_step(lid: u32, acc: ptr<function, Acc>) {
    let tc = lid / (TP / RP);
    let tp = lid % (TP / RP);
    for (var k = 0u; k < TK; k++) {
        var a: array<vec4<f32>, CQ>;
        for (var c = 0u; c < CQ; c++) {
            a[c] = wtile[k * QC + tc + (TC / RC) * c];
        }
        for (var j4 = 0u; j4 < RP / 4u; j4++) {
            let b = xtile[k * QP + tp + (TP / RP) * j4];
            for (var c = 0u; c < CQ; c++) {
                (*acc)[(4u * j4) * CQ + c] = fma(vec4<f32>(b.x), a[c], (*acc)[(4u * j4) * CQ + c]);
                (*acc)[(4u * j4 + 1u) * CQ + c] = fma(vec4<f32>(b.y), a[c], (*acc)[(4u * j4 + 1u) * CQ + c]);
                (*acc)[(4u * j4 + 2u) * CQ + c] = fma(vec4<f32>(b.z), a[c], (*acc)[(4u * j4 + 2u) * CQ + c]);
                (*acc)[(4u * j4 + 3u) * CQ + c] = fma(vec4<f32>(b.w), a[c], (*acc)[(4u * j4 + 3u) * CQ + c]);
            }
        }
    }
}

// What an invocation stages: the weight quad lid % QC of rows lid / QC + (NT / QC)·i, and the
// input quad lid % QP of rows lid / QP + (NT / QP)·i (NT is a multiple of QC and QP, so the
// quads are the same each time).
struct Staging {
    wcol: u32,  // weight column (vec4) of this piece
    wok: bool,  // inside the weight row (past it only in a piece's last, partial tile)
    y: array<i32, 4>, // the staged pixels' rows (-2: past the end, never inside the image)
    x: array<i32, 4>,
}

fn staging(lid: u32, q0: u32, c0: u32) -> Staging {
    var s: Staging;
    s.wcol = c0 / 4u + lid % QC;
    s.wok = p.out0 / 4u + s.wcol < p.row_vec4s;
    for (var j = 0u; j < 4u; j++) {
        let q = q0 + 4u * (lid % QP) + j;
        s.y[j] = select(-2, i32(q / p.w), q < p.h * p.w);
        s.x[j] = i32(q % p.w);
    }
    return s;
}

// The staged pixels' offsets in a channel for tap `tap`, -1 in zero padding. `sign` is 1 for
// the forward (tap (ky, kx) reads (y + ky - 1, x + kx - 1)) and -1 for the backward, which
// gathers from (y + 1 - ky, x + 1 - kx).
fn tap_offsets(s: Staging, tap: u32, sign: i32) -> array<i32, 4> {
    let dy = sign * (i32(tap / 3u) - 1);
    let dx = sign * (i32(tap % 3u) - 1);
    var off: array<i32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let yy = padded(s.y[j] + dy, p.h);
        let xx = padded(s.x[j] + dx, p.w);
        // (Pixels past the end, row -2, load nothing.)
        off[j] = select(-1, yy * i32(p.w) + xx, yy >= 0 && xx >= 0 && s.y[j] >= 0);
    }
    return off;
}

fn load_quad(r: u32, off: array<i32, 4>) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    let base = p.src_base + r * p.h * p.w;
    for (var j = 0u; j < 4u; j++) {
        if (off[j] >= 0) {
            v[j] = f32(src[base + u32(off[j])]);
        }
    }
    return v;
}

// The invocation's share of the GEMM over `red` reduction channels and the 9 taps, a tap at a
// time (reduction rows r of tap t).
fn gemm_by_tap(lid: u32, q0: u32, c0: u32, red: u32, sign: i32) -> Acc {
    let s = staging(lid, q0, c0);
    var acc: Acc;
    for (var tap = 0u; tap < 9u; tap++) {
        let off = tap_offsets(s, tap, sign);
        for (var r0 = 0u; r0 < red; r0 += TK) {
            for (var i = 0u; i < TK * QC / NT; i++) {
                let r = r0 + lid / QC + (NT / QC) * i;
                var wv = vec4<f32>(0.0);
                if (r < red && s.wok) {
                    wv = weight[weight_index(tap, r, s.wcol)];
                }
                wtile[lid + NT * i] = wv;
            }
            for (var i = 0u; i < TK * QP / NT; i++) {
                let r = r0 + lid / QP + (NT / QP) * i;
                var xv = vec4<f32>(0.0);
                if (r < red) {
                    xv = load_quad(r, off);
                }
                xtile[lid + NT * i] = xv;
            }
            workgroupBarrier();
            multiply_step(lid, &acc);
            workgroupBarrier();
        }
    }
    return acc;
}

// The same with the taps folded into the reduction (row k is tap k / red, channel k % red):
// for few reduction channels (the first layer's 3), which a tap at a time would pad to TK.
fn gemm_folded(lid: u32, q0: u32, c0: u32, red: u32, sign: i32) -> Acc {
    let s = staging(lid, q0, c0);
    var acc: Acc;
    for (var k0 = 0u; k0 < 9u * red; k0 += TK) {
        for (var i = 0u; i < TK * QC / NT; i++) {
            let k = k0 + lid / QC + (NT / QC) * i;
            var wv = vec4<f32>(0.0);
            if (k < 9u * red && s.wok) {
                wv = weight[weight_index(k / red, k % red, s.wcol)];
            }
            wtile[lid + NT * i] = wv;
        }
        for (var i = 0u; i < TK * QP / NT; i++) {
            let k = k0 + lid / QP + (NT / QP) * i;
            var xv = vec4<f32>(0.0);
            if (k < 9u * red) {
                xv = load_quad(k % red, tap_offsets(s, k / red, sign));
            }
            xtile[lid + NT * i] = xv;
        }
        workgroupBarrier();
        multiply_step(lid, &acc);
        workgroupBarrier();
    }
    return acc;
}

fn gemm(lid: u32, q0: u32, c0: u32, red: u32, sign: i32) -> Acc {
    // (Uniform: every invocation takes the same branch.)
    if (red < TK) {
        return gemm_folded(lid, q0, c0, red, sign);
    }
    return gemm_by_tap(lid, q0, c0, red, sign);
}

// acc[j · CQ + c][e] is output channel c0 + ch_offset(lid, c) + e at pixel
// q0 + px_offset(lid, j).

// Adds the bias and applies the ReLU.
fn bias_relu(acc: Acc, lid: u32, c0: u32) -> Acc {
    var out = acc;
    for (var c = 0u; c < CQ; c++) {
        for (var e = 0u; e < 4u; e++) {
            let ch = c0 + ch_offset(lid, c) + e;
            let b = select(0.0, bias[p.out0 + min(ch, p.outs - 1u)], ch < p.outs);
            for (var j = 0u; j < RP; j++) {
                out[j * CQ + c][e] = max(acc[j * CQ + c][e] + b, 0.0);
            }
        }
    }
    return out;
}

// Zeroes the values whose input (the mask) was not positive.
fn mask_by_input(acc: Acc, lid: u32, q0: u32, c0: u32) -> Acc {
    let hw = p.h * p.w;
    var out = acc;
    for (var c = 0u; c < CQ; c++) {
        for (var e = 0u; e < 4u; e++) {
            let ch = c0 + ch_offset(lid, c) + e;
            for (var j = 0u; j < RP; j++) {
                let q = q0 + px_offset(lid, j);
                if (ch < p.outs && q < hw && f32(mask[p.mask_base + ch * hw + q]) <= 0.0) {
                    out[j * CQ + c][e] = 0.0;
                }
            }
        }
    }
    return out;
}

// The same from the input's signs as bits (a twin, not a flag: an entry point may use only the
// bindings it binds).
fn mask_by_bits(acc: Acc, lid: u32, q0: u32, c0: u32) -> Acc {
    let hw = p.h * p.w;
    var out = acc;
    for (var c = 0u; c < CQ; c++) {
        for (var e = 0u; e < 4u; e++) {
            let ch = c0 + ch_offset(lid, c) + e;
            for (var j = 0u; j < RP; j++) {
                let q = q0 + px_offset(lid, j);
                if (ch < p.outs && q < hw && !positive_bit(p.mask_base + ch * hw + q)) {
                    out[j * CQ + c][e] = 0.0;
                }
            }
        }
    }
    return out;
}

// Adds what earlier reduction pieces left in dst (only when ADD_PREVIOUS is set).
fn add_previous(acc: Acc, lid: u32, q0: u32, c0: u32) -> Acc {
    if ((p.flags & ADD_PREVIOUS) == 0u) {
        return acc;
    }
    let hw = p.h * p.w;
    var out = acc;
    for (var c = 0u; c < CQ; c++) {
        for (var e = 0u; e < 4u; e++) {
            let ch = c0 + ch_offset(lid, c) + e;
            for (var j = 0u; j < RP; j++) {
                let q = q0 + px_offset(lid, j);
                if (ch < p.outs && q < hw) {
                    out[j * CQ + c][e] += f32(dst[p.dst_base + ch * hw + q]);
                }
            }
        }
    }
    return out;
}

// Writes the invocation's outputs, skipping padding.
fn store(acc: Acc, lid: u32, q0: u32, c0: u32) {
    let hw = p.h * p.w;
    for (var c = 0u; c < CQ; c++) {
        for (var e = 0u; e < 4u; e++) {
            let ch = c0 + ch_offset(lid, c) + e;
            for (var j = 0u; j < RP; j++) {
                let q = q0 + px_offset(lid, j);
                if (ch < p.outs && q < hw) {
                    dst[p.dst_base + ch * hw + q] = to_dst(acc[j * CQ + c][e]);
                }
            }
        }
    }
}

@compute @workgroup_size(NT, 1, 1)
fn conv_forward(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    var acc = add_previous(gemm(lid, o.x, o.y, p.red, 1), lid, o.x, o.y);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = bias_relu(acc, lid, o.y);
    }
    store(acc, lid, o.x, o.y);
}

// The first pixel and channel of the workgroup's tile: x (+ y past 65535) over pixel tiles,
// z over channel tiles.
fn tile_origin(at: Place) -> vec2<u32> {
    return vec2<u32>((at.wid.x + at.wid.y * at.nwg.x) * TP, at.wid.z * TC);
}

@compute @workgroup_size(NT, 1, 1)
fn conv_backward_input(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    store(add_previous(gemm(lid, o.x, o.y, p.red, -1), lid, o.x, o.y), lid, o.x, o.y);
}

@compute @workgroup_size(NT, 1, 1)
fn conv_backward_input_masked(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    var acc = add_previous(gemm(lid, o.x, o.y, p.red, -1), lid, o.x, o.y);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = mask_by_input(acc, lid, o.x, o.y);
    }
    store(acc, lid, o.x, o.y);
}

@compute @workgroup_size(NT, 1, 1)
fn conv_backward_input_bitmask(at: Place) {
    let lid = at.lid;
    let o = tile_origin(at);
    var acc = add_previous(gemm(lid, o.x, o.y, p.red, -1), lid, o.x, o.y);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = mask_by_bits(acc, lid, o.x, o.y);
    }
    store(acc, lid, o.x, o.y);
}

// The input gradient of a layer whose input has at most a few channels (the image's 3): a
// tile of TC channels would be nearly all padding, so each invocation computes 4 channels
// (one weight vec4, the same for the whole workgroup) x 4 pixels straight from memory.
// Workgroups: x (+ y past 65535) over tiles of 256 pixels, z over quads of channels.
@compute @workgroup_size(64, 1, 1)
fn conv_backward_input_narrow(at: Place) {
    let wid = at.wid;
    let q0 = (wid.x + wid.y * at.nwg.x) * 256u + 4u * at.lid;
    var y: array<i32, 4>;
    var x: array<i32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let q = q0 + j;
        y[j] = select(-2, i32(q / p.w), q < p.h * p.w);
        x[j] = i32(q % p.w);
    }
    var acc: array<vec4<f32>, 4>;
    for (var tap = 0u; tap < 9u; tap++) {
        let dy = i32(tap / 3u) - 1;
        let dx = i32(tap % 3u) - 1;
        var off: array<i32, 4>;
        for (var j = 0u; j < 4u; j++) {
            let yy = padded(y[j] - dy, p.h);
            let xx = padded(x[j] - dx, p.w);
            off[j] = select(-1, yy * i32(p.w) + xx, yy >= 0 && xx >= 0 && y[j] >= 0);
        }
        for (var r = 0u; r < p.red; r++) {
            let wv = weight[weight_index(tap, r, wid.z)];
            let base = p.src_base + r * p.h * p.w;
            for (var j = 0u; j < 4u; j++) {
                if (off[j] >= 0) {
                    acc[j] = fma(vec4<f32>(f32(src[base + u32(off[j])])), wv, acc[j]);
                }
            }
        }
    }
    let hw = p.h * p.w;
    for (var e = 0u; e < 4u; e++) {
        let ch = 4u * wid.z + e;
        for (var j = 0u; j < 4u; j++) {
            let q = q0 + j;
            if (ch < p.outs && q < hw) {
                var v = acc[j][e];
                if ((p.flags & ADD_PREVIOUS) != 0u) {
                    v += f32(dst[p.dst_base + ch * hw + q]);
                }
                dst[p.dst_base + ch * hw + q] = to_dst(v);
            }
        }
    }
}
