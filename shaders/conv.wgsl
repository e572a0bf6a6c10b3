// 3x3 convolution, stride 1, zero padding 1, on CHW f32 maps.
//
// Forward: dst = relu(conv(src, weight) + bias).
// Backward (input only, weights frozen): dst = conv_transpose(grad, weight) · [below > 0].
// The ReLU mask is fused into whoever writes a gradient: `grad` arrives already masked by
// this layer's output, and the backward masks what it writes by the layer below's output
// (when that layer has a ReLU), so the hot loop reads the gradient alone.
//
// Register-blocked without workgroup memory or barriers: one invocation computes
// 4·CV channels x 4 horizontally adjacent pixels. The 6 input values that the 4 pixels
// need from each row are loaded once and reused by all 3 kernel columns, and the
// channels' weights come in as CV vec4 loads. Weight rows are padded to a multiple
// of 4·CV channels with zeros on the host, so only stores need guards.

// Channel vec4s per invocation. The host rewrites this line to pick the tile for the
// adapter (ops::ConvTile); 2 (8 channels) is the default.
const CV: u32 = 2u;

struct ConvParams {
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    // vec4s per weight row: padded output channels / 4 (forward), padded input channels / 4 (backward)
    row_vec4s: u32,
    // backward: 1 to mask dst by aux > 0 (the input came from a ReLU)
    mask_output: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element types of the bindings that can hold feature maps: the host rewrites these to f16
// for 16-bit storage (ops::specialise); arithmetic stays f32.
alias Src = f32;
alias Aux = f32;
alias Dst = f32;

@group(0) @binding(0) var<uniform> p: ConvParams;
// forward: the layer's input [cin][h][w]; backward: dL/d(output) [cout][h][w]
@group(0) @binding(1) var<storage, read> src: array<Src>;
// forward: [ky][kx][cin][cout_pad] (Keras HWIO, padded); backward: [ky][kx][cout][cin_pad]
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;
// forward: bias [cout]; backward: the layer's input [cin][h][w] (its ReLU mask, if mask_output)
@group(0) @binding(3) var<storage, read> aux: array<Aux>;
// forward: output [cout][h][w]; backward: dL/d(input) [cin][h][w]
@group(0) @binding(4) var<storage, read_write> dst: array<Dst>;

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

// Writes the block to dst, skipping padding: forward adds the bias (aux) and applies the
// ReLU; backward zeroes where the input (aux) was not positive, when asked to.
fn store(acc: Acc, c0: u32, channels: u32, y: u32, x0: u32, forward: bool) {
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
                if (ch < channels) {
                    var v = acc[j][c][e];
                    if (forward) {
                        v = max(v + f32(aux[ch]), 0.0);
                    } else if (p.mask_output != 0u && f32(aux[ch * hw + base]) <= 0.0) {
                        v = 0.0;
                    }
                    dst[ch * hw + base] = Dst(v);
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
    for (var ci = 0u; ci < p.cin; ci++) {
        for (var ky = 0u; ky < 3u; ky++) {
            let yy = i32(y) + i32(ky) - 1;
            if (yy < 0 || yy >= i32(p.h)) {
                continue;
            }
            let row = ci * hw + u32(yy) * p.w;
            // v[j] = src[row][x0 - 1 + j]
            var v: array<f32, 6>;
            for (var j = 0u; j < 6u; j++) {
                let xx = x0 + j;
                if (xx >= 1u && xx <= p.w) {
                    v[j] = f32(src[row + xx - 1u]);
                }
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let k = ((ky * 3u + kx) * p.cin + ci) * p.row_vec4s + gid.z * CV;
                // pixel j at kernel column kx reads x0 + j + kx - 1 = v[j + kx]
                accumulate(&acc, v, kx, k);
            }
        }
    }
    store(acc, c0, p.cout, y, x0, true);
}

@compute @workgroup_size(8, 8, 1)
fn conv_backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x0 = gid.x * 4u;
    let y = gid.y;
    let c0 = gid.z * 4u * CV;
    if (x0 >= p.w || y >= p.h) {
        return;
    }
    let hw = p.h * p.w;
    var acc: Acc;
    for (var co = 0u; co < p.cout; co++) {
        for (var ky = 0u; ky < 3u; ky++) {
            // input row y receives from output row y + 1 - ky
            let yy = i32(y) + 1 - i32(ky);
            if (yy < 0 || yy >= i32(p.h)) {
                continue;
            }
            let row = co * hw + u32(yy) * p.w;
            // v[j] = grad[row][x0 - 1 + j] (already masked by this layer's ReLU)
            var v: array<f32, 6>;
            for (var j = 0u; j < 6u; j++) {
                let xx = x0 + j;
                if (xx >= 1u && xx <= p.w) {
                    v[j] = f32(src[row + xx - 1u]);
                }
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let k = ((ky * 3u + kx) * p.cout + co) * p.row_vec4s + gid.z * CV;
                // input pixel x0 + j receives from output x0 + j + 1 - kx = v[j + 2 - kx]
                accumulate(&acc, v, 2u - kx, k);
            }
        }
    }
    store(acc, c0, p.cin, y, x0, false);
}
