// 3x3 convolution, register-blocked without workgroup memory or barriers (the software
// driver runs barriers slowly): one invocation computes 4·CV channels x 4 horizontally
// adjacent pixels. The 6 input values that the 4 pixels need from each row are loaded once
// and reused by all 3 kernel columns, and the channels' weights come in as CV vec4 loads.
// Weight rows are padded to a multiple of 4·CV channels with zeros on the host, so only
// stores need guards. Parameters and bindings: conv_common.wgsl, joined in front.

// Channel vec4s per invocation. The host rewrites this line to pick the tiling for the
// adapter (kernels::Tiling::Registers); 2 (8 channels) is the default.
const CV: u32 = 2u;

// acc[j][c] for pixel j and channels 4c..4c+3 of the invocation's block.
alias Acc = array<array<vec4<f32>, CV>, 4>;

// acc[j] += v[j + shift] * weight[k..k + CV] for the 4 pixels j, v being the 6-value input window.
fn accumulate(acc: ptr<function, Acc>, v: array<f32, 6>, shift: u32, k: u32) {
    var wv: array<vec4<f32>, CV>;
    for (var c = 0u; c < CV; c++) {
        wv[c] = weight[k + c];
    }
    for (var j = 0u; j < 4u; j++) {
        let x = vec4<f32>(v[j + shift]);
        for (var c = 0u; c < CV; c++) {
            (*acc)[j][c] = fma(x, wv[c], (*acc)[j][c]);
        }
    }
}

// v[j] = src[row][x0 - 1 + j] for j < 6, through the padding (zero outside the map, or
// wrapped): the input the 4 pixels x0 .. x0 + 3 need from one row.
fn window(row: u32, x0: u32) -> array<f32, 6> {
    var v: array<f32, 6>;
    for (var j = 0u; j < 6u; j++) {
        let xx = padded(i32(x0 + j) - 1, p.w);
        if (xx >= 0) {
            v[j] = f32(src[p.src_base + row + u32(xx)]);
        }
    }
    return v;
}

// The block's output channel c0 + 4c + e at pixel x0 + j is acc[j][c][e].

// Adds the bias and applies the ReLU.
fn bias_relu(acc: Acc, c0: u32) -> Acc {
    var out = acc;
    for (var c = 0u; c < CV; c++) {
        for (var e = 0u; e < 4u; e++) {
            let ch = c0 + 4u * c + e;
            let b = select(0.0, bias[p.out0 + min(ch, p.outs - 1u)], ch < p.outs);
            for (var j = 0u; j < 4u; j++) {
                out[j][c][e] = max(acc[j][c][e] + b, 0.0);
            }
        }
    }
    return out;
}

// Zeroes the values whose input (the mask) was not positive.
fn mask_by_input(acc: Acc, c0: u32, y: u32, x0: u32) -> Acc {
    let hw = p.h * p.w;
    var out = acc;
    for (var j = 0u; j < 4u; j++) {
        let x = x0 + j;
        if (x >= p.w) {
            break;
        }
        for (var c = 0u; c < CV; c++) {
            for (var e = 0u; e < 4u; e++) {
                let ch = c0 + 4u * c + e;
                if (ch < p.outs && f32(mask[p.mask_base + ch * hw + y * p.w + x]) <= 0.0) {
                    out[j][c][e] = 0.0;
                }
            }
        }
    }
    return out;
}

// The same from the input's signs as bits (a twin, not a flag: an entry point may use only the
// bindings it binds).
fn mask_by_bits(acc: Acc, c0: u32, y: u32, x0: u32) -> Acc {
    let hw = p.h * p.w;
    var out = acc;
    for (var j = 0u; j < 4u; j++) {
        let x = x0 + j;
        if (x >= p.w) {
            break;
        }
        for (var c = 0u; c < CV; c++) {
            for (var e = 0u; e < 4u; e++) {
                let ch = c0 + 4u * c + e;
                if (ch < p.outs && !positive_bit(p.mask_base + ch * hw + y * p.w + x)) {
                    out[j][c][e] = 0.0;
                }
            }
        }
    }
    return out;
}

// Adds what earlier reduction pieces left in dst.
fn add_previous(acc: Acc, c0: u32, y: u32, x0: u32) -> Acc {
    let hw = p.h * p.w;
    var out = acc;
    for (var j = 0u; j < 4u; j++) {
        let x = x0 + j;
        if (x >= p.w) {
            break;
        }
        for (var c = 0u; c < CV; c++) {
            for (var e = 0u; e < 4u; e++) {
                let ch = c0 + 4u * c + e;
                if (ch < p.outs) {
                    out[j][c][e] += f32(dst[p.dst_base + ch * hw + y * p.w + x]);
                }
            }
        }
    }
    return out;
}

// Writes the block to dst, skipping padding.
fn store(acc: Acc, c0: u32, y: u32, x0: u32) {
    let hw = p.h * p.w;
    for (var j = 0u; j < 4u; j++) {
        let x = x0 + j;
        if (x >= p.w) {
            break;
        }
        let base = y * p.w + x;
        for (var c = 0u; c < CV; c++) {
            for (var e = 0u; e < 4u; e++) {
                let ch = c0 + 4u * c + e;
                if (ch < p.outs) {
                    dst[p.dst_base + ch * hw + base] = to_dst(acc[j][c][e]);
                }
            }
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn conv_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x0 = gid.x * 4u;
    let y = gid.y;
    let c0 = gid.z * 4u * CV;
    if (x0 >= p.w || y >= p.h) {
        return;
    }
    let hw = p.h * p.w;
    var acc: Acc;
    for (var ci = 0u; ci < p.red; ci++) {
        for (var ky = 0u; ky < 3u; ky++) {
            let yy = padded(i32(y) + i32(ky) - 1, p.h);
            if (yy < 0) {
                continue;
            }
            let v = window(ci * hw + u32(yy) * p.w, x0);
            for (var kx = 0u; kx < 3u; kx++) {
                let k = weight_index(ky * 3u + kx, ci, gid.z * CV);
                // pixel j at kernel column kx reads x0 + j + kx - 1 = v[j + kx]
                accumulate(&acc, v, kx, k);
            }
        }
    }
    if ((p.flags & ADD_PREVIOUS) != 0u) {
        acc = add_previous(acc, c0, y, x0);
    }
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = bias_relu(acc, c0);
    }
    store(acc, c0, y, x0);
}

// dL/d(input) of the block at input channels gid.z·4·CV.., row gid.y, pixels gid.x·4..
fn backward(gid: vec3<u32>) -> Acc {
    let x0 = gid.x * 4u;
    let y = gid.y;
    let hw = p.h * p.w;
    var acc: Acc;
    for (var co = 0u; co < p.red; co++) {
        for (var ky = 0u; ky < 3u; ky++) {
            // input row y receives from output row y + 1 - ky
            let yy = padded(i32(y) + 1 - i32(ky), p.h);
            if (yy < 0) {
                continue;
            }
            // (the gradient arrives already masked by this layer's ReLU)
            let v = window(co * hw + u32(yy) * p.w, x0);
            for (var kx = 0u; kx < 3u; kx++) {
                let k = weight_index(ky * 3u + kx, co, gid.z * CV);
                // input pixel x0 + j receives from output x0 + j + 1 - kx = v[j + 2 - kx]
                accumulate(&acc, v, 2u - kx, k);
            }
        }
    }
    if ((p.flags & ADD_PREVIOUS) != 0u) {
        acc = add_previous(acc, gid.z * 4u * CV, y, x0);
    }
    return acc;
}

@compute @workgroup_size(8, 8, 1)
fn conv_backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x * 4u >= p.w || gid.y >= p.h) {
        return;
    }
    store(backward(gid), gid.z * 4u * CV, gid.y, gid.x * 4u);
}

@compute @workgroup_size(8, 8, 1)
fn conv_backward_input_masked(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x * 4u >= p.w || gid.y >= p.h) {
        return;
    }
    let c0 = gid.z * 4u * CV;
    let x0 = gid.x * 4u;
    var acc = backward(gid);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = mask_by_input(acc, c0, gid.y, x0);
    }
    store(acc, c0, gid.y, x0);
}

@compute @workgroup_size(8, 8, 1)
fn conv_backward_input_bitmask(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x * 4u >= p.w || gid.y >= p.h) {
        return;
    }
    let c0 = gid.z * 4u * CV;
    let x0 = gid.x * 4u;
    var acc = backward(gid);
    if ((p.flags & LAST_PIECE) != 0u) {
        acc = mask_by_bits(acc, c0, gid.y, x0);
    }
    store(acc, c0, gid.y, x0);
}
