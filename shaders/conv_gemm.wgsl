// 3x3 convolution, stride 1, zero padding 1, on CHW f32 maps, as an implicit GEMM with
// workgroup-memory tiles: the variant for real GPUs, where shared memory and barriers are
// cheap (conv.wgsl's register-blocked kernel is the software driver's).
//
// out[o][q] = sum over taps t and reduction channels r of W[t][r][o] · in[r][q shifted by t]
// A workgroup owns 64 output channels x 64 pixels (of the flattened h·w, so narrow images
// waste nothing); each step it stages 16 reduction rows of weights and of the shifted input
// in workgroup memory, and each invocation accumulates 4 channels x 4 pixels from them.
// Parameters and bindings: conv_common.wgsl, joined in front; weight rows are padded to 64
// channels. The same entry points and fused epilogues as conv.wgsl.

const TC: u32 = 64u; // output channels per workgroup
const TP: u32 = 64u; // pixels per workgroup
const TK: u32 = 16u; // reduction channels per staged step

// [TK][TC / 4] weights and [TK][TP / 4] shifted inputs of one step.
var<workgroup> wtile: array<vec4<f32>, 256>;
var<workgroup> xtile: array<vec4<f32>, 256>;

// acc[j][e]: pixel p0 + 4·(lid % 16) + j, channel c0 + 4·(lid / 16) + e.
alias Acc = array<vec4<f32>, 4>;

// The invocation's share of the GEMM over `red` reduction channels. `sign` is 1 for the
// forward (tap (ky, kx) reads (y + ky - 1, x + kx - 1)) and -1 for the backward, which
// gathers from (y + 1 - ky, x + 1 - kx).
fn gemm(lid: u32, q0: u32, c0: u32, red: u32, sign: i32) -> Acc {
    let hw = p.h * p.w;
    // What this invocation stages: reduction row lr, channel / pixel quad lq.
    let lr = lid / 16u;
    let lq = lid % 16u;
    var ly: array<i32, 4>;
    var lx: array<i32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let q = q0 + 4u * lq + j;
        // Pixels past the end get a row that is never inside the image.
        ly[j] = select(-2, i32(q / p.w), q < hw);
        lx[j] = i32(q % p.w);
    }
    // (Past the weight row only in a piece's last, partial tile: those columns are never stored.)
    let wcol = c0 / 4u + lq;
    let wok = p.out0 / 4u + wcol < p.row_vec4s;
    // What it computes from the tiles.
    let tc = lid / 16u;
    let tp = lid % 16u;
    var acc: Acc;
    for (var tap = 0u; tap < 9u; tap++) {
        let dy = sign * (i32(tap / 3u) - 1);
        let dx = sign * (i32(tap % 3u) - 1);
        // Offsets of the 4 staged pixels for this tap, -1 in the padding.
        var off: array<i32, 4>;
        for (var j = 0u; j < 4u; j++) {
            let yy = ly[j] + dy;
            let xx = lx[j] + dx;
            let inside = yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
            off[j] = select(-1, yy * i32(p.w) + xx, inside);
        }
        for (var r0 = 0u; r0 < red; r0 += TK) {
            let r = r0 + lr;
            var wv = vec4<f32>(0.0);
            var xv = vec4<f32>(0.0);
            if (r < red) {
                if (wok) {
                    wv = weight[weight_index(tap, r, wcol)];
                }
                let base = p.src_base + r * hw;
                for (var j = 0u; j < 4u; j++) {
                    if (off[j] >= 0) {
                        xv[j] = f32(src[base + u32(off[j])]);
                    }
                }
            }
            wtile[lid] = wv;
            xtile[lid] = xv;
            workgroupBarrier();
            for (var k = 0u; k < TK; k++) {
                let a = wtile[k * 16u + tc];
                let b = xtile[k * 16u + tp];
                acc[0] = fma(vec4<f32>(b.x), a, acc[0]);
                acc[1] = fma(vec4<f32>(b.y), a, acc[1]);
                acc[2] = fma(vec4<f32>(b.z), a, acc[2]);
                acc[3] = fma(vec4<f32>(b.w), a, acc[3]);
            }
            workgroupBarrier();
        }
    }
    return acc;
}

// acc[j][e] is output channel c0 + 4·(lid / 16) + e at pixel q0 + 4·(lid % 16) + j.

// Adds the bias and applies the ReLU.
fn bias_relu(acc: Acc, lid: u32, c0: u32) -> Acc {
    var out = acc;
    for (var e = 0u; e < 4u; e++) {
        let ch = c0 + 4u * (lid / 16u) + e;
        let b = select(0.0, bias[p.out0 + min(ch, p.outs - 1u)], ch < p.outs);
        for (var j = 0u; j < 4u; j++) {
            out[j][e] = max(acc[j][e] + b, 0.0);
        }
    }
    return out;
}

// Zeroes the values whose input (the mask) was not positive.
fn mask_by_input(acc: Acc, lid: u32, q0: u32, c0: u32) -> Acc {
    let hw = p.h * p.w;
    var out = acc;
    for (var e = 0u; e < 4u; e++) {
        let ch = c0 + 4u * (lid / 16u) + e;
        for (var j = 0u; j < 4u; j++) {
            let q = q0 + 4u * (lid % 16u) + j;
            if (ch < p.outs && q < hw && f32(mask[p.mask_base + ch * hw + q]) <= 0.0) {
                out[j][e] = 0.0;
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
    for (var e = 0u; e < 4u; e++) {
        let ch = c0 + 4u * (lid / 16u) + e;
        for (var j = 0u; j < 4u; j++) {
            let q = q0 + 4u * (lid % 16u) + j;
            if (ch < p.outs && q < hw && !positive_bit(p.mask_base + ch * hw + q)) {
                out[j][e] = 0.0;
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
    for (var e = 0u; e < 4u; e++) {
        let ch = c0 + 4u * (lid / 16u) + e;
        for (var j = 0u; j < 4u; j++) {
            let q = q0 + 4u * (lid % 16u) + j;
            if (ch < p.outs && q < hw) {
                out[j][e] += f32(dst[p.dst_base + ch * hw + q]);
            }
        }
    }
    return out;
}

// Writes the invocation's 4 x 4 outputs, skipping padding.
fn store(acc: Acc, lid: u32, q0: u32, c0: u32) {
    let hw = p.h * p.w;
    for (var e = 0u; e < 4u; e++) {
        let ch = c0 + 4u * (lid / 16u) + e;
        if (ch >= p.outs) {
            return;
        }
        for (var j = 0u; j < 4u; j++) {
            let q = q0 + 4u * (lid % 16u) + j;
            if (q < hw) {
                dst[p.dst_base + ch * hw + q] = to_dst(acc[j][e]);
            }
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn conv_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let o = tile_origin(wid, nwg);
    var acc = add_previous(gemm(lid, o.x, o.y, p.red, 1), lid, o.x, o.y);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = bias_relu(acc, lid, o.y);
    }
    store(acc, lid, o.x, o.y);
}

// The first pixel and channel of the workgroup's tile: x (+ y past 65535) over pixel tiles,
// z over channel tiles.
fn tile_origin(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    return vec2<u32>((wid.x + wid.y * nwg.x) * TP, wid.z * TC);
}

@compute @workgroup_size(256, 1, 1)
fn conv_backward_input(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let o = tile_origin(wid, nwg);
    store(add_previous(gemm(lid, o.x, o.y, p.red, -1), lid, o.x, o.y), lid, o.x, o.y);
}

@compute @workgroup_size(256, 1, 1)
fn conv_backward_input_masked(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let o = tile_origin(wid, nwg);
    var acc = add_previous(gemm(lid, o.x, o.y, p.red, -1), lid, o.x, o.y);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = mask_by_input(acc, lid, o.x, o.y);
    }
    store(acc, lid, o.x, o.y);
}

@compute @workgroup_size(256, 1, 1)
fn conv_backward_input_bitmask(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let o = tile_origin(wid, nwg);
    var acc = add_previous(gemm(lid, o.x, o.y, p.red, -1), lid, o.x, o.y);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = mask_by_bits(acc, lid, o.x, o.y);
    }
    store(acc, lid, o.x, o.y);
}
