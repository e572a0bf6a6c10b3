//! Every kernel against its CPU reference, on fresh random inputs of awkward shapes.

mod common;

use common::{
    check, ctx, features_from, grad_scale, random, read_features, rng, round_f16, submit_all,
    CONV_SHAPES,
};
use impasto::gpu::submit;
use impasto::kernels::conv::{pad_backward_weights, pad_forward_weights};
use impasto::kernels::{pool, precision, Kernels, Storage, Tiling, Variants, TILINGS};
use impasto::model::Convention;
use impasto::model::{AdamConfig, Affine, Pooling};
use impasto::reference;

const TOL: f64 = 1e-4;

/// What f16 operands with f32 accumulation give (max error relative to the result's scale):
/// the cooperative-matrix variants' tolerance.
const MIXED_TOL: f64 = 4e-3;

/// Every conv tiling the adapter runs, with the tolerance its arithmetic allows: the f32 ones,
/// and the variants on cooperative matrices the adapter offers.
fn conv_tilings(g: &impasto::gpu::Gpu) -> Vec<(Tiling, f64)> {
    TILINGS
        .map(|t| (t, TOL))
        .into_iter()
        .chain(mixed_tilings(g))
        .collect()
}

/// The variants on cooperative matrices the adapter offers, with their tolerance.
fn mixed_tilings(g: &impasto::gpu::Gpu) -> Vec<(Tiling, f64)> {
    (impasto::kernels::MIXED_TILINGS.into_iter())
        .filter(|&t| precision::not_offered(g, t).is_none())
        .map(|t| (t, MIXED_TOL))
        .collect()
}

#[test]
fn conv_forward_matches_reference() {
    let g = &ctx().gpu;
    let mut r = rng(1);
    // Every tile configuration an adapter can get.
    for (tile, tol) in conv_tilings(g) {
        let k = Kernels::with_tiling(g, tile).unwrap();
        for (k_shape, (cin, cout, h, w)) in CONV_SHAPES.into_iter().enumerate() {
            // Every other shape with circular padding (--seamless).
            let circular = k_shape % 2 == 1;
            let (x, xd) = random(&mut r, cin * h * w, -1.0, 1.0);
            let (wt, kd) = random(&mut r, 9 * cin * cout, -0.3, 0.3);
            let (b, bd) = random(&mut r, cout, -0.2, 0.2);
            let xb = g.storage_from("x", &x).unwrap();
            let kb = g
                .storage_from("k", &pad_forward_weights(&wt, cin, cout, tile.pad()))
                .unwrap();
            let bb = g.storage_from("b", &b).unwrap();
            let out = g.storage("out", cout * h * w).unwrap();
            let d = k
                .conv
                .forward(g, ((cin, cout, h, w), circular), &xb, &kb, &bb, &out);
            submit_all(g, &[&d]);
            let got = g.read(&out, cout * h * w).unwrap();
            let want = reference::conv_forward_padded(&xd, &kd, &bd, (cin, cout, h, w), circular);
            // Both sides of the ReLU are exercised (a 1x1 map may land on one side only).
            if h * w > 1 {
                assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0));
            }
            check(
                &format!("conv_forward (tile {tile}, circular {circular}) {cin}->{cout} {h}x{w}"),
                &got,
                &want,
                tol,
            );
        }
    }
}

#[test]
fn conv_backward_input_matches_reference() {
    let g = &ctx().gpu;
    let mut r = rng(2);
    for (tile, tol) in conv_tilings(g) {
        let k = Kernels::with_tiling(g, tile).unwrap();
        for (k_shape, (cin, cout, h, w)) in CONV_SHAPES.into_iter().enumerate() {
            // Every other shape with circular padding (--seamless).
            let circular = k_shape % 2 == 1;
            let dims = ((cin, cout, h, w), circular);
            let (wt, kd) = random(&mut r, 9 * cin * cout, -0.3, 0.3);
            // An activation that is zero about half the time exercises the ReLU mask.
            let (_, actd) = random(&mut r, cout * h * w, -1.0, 1.0);
            let actd: Vec<f64> = actd.iter().map(|v| v.max(0.0)).collect();
            let (masked, grd, (below, belowd)) =
                common::backward_case(&mut r, &actd, (cin, cout, h, w));
            // Every other shape, the input came from a ReLU too: the output must leave masked.
            let input_relu = (cin + h) % 2 == 0;
            let grb = g.storage_from("g", &masked).unwrap();
            let kb = g
                .storage_from("k", &pad_backward_weights(&wt, cin, cout, tile.pad()))
                .unwrap();
            let bb = g.storage_from("below", &below).unwrap();
            let out = g.storage("out", cin * h * w).unwrap();
            let d = k
                .conv
                .backward_input(g, dims, &grb, &kb, input_relu.then_some(&bb), &out);
            submit_all(g, &[&d]);
            let got = g.read(&out, cin * h * w).unwrap();
            let want = common::conv_backward_reference(
                (&grd, &actd, &kd),
                input_relu.then_some(&belowd[..]),
                dims,
            );
            check(
                &format!(
                    "conv_backward_input (tile {tile}, circular {circular}) {cin}->{cout} {h}x{w}"
                ),
                &got,
                &want,
                tol,
            );
            if input_relu {
                // The same mask from the input's signs as bits (kernels::signs), the bits
                // buffer filled with ones first: every word must be written.
                let words = impasto::kernels::signs::words(cin * h * w);
                let bits = g
                    .storage_from("bits", &vec![f32::from_bits(!0); words])
                    .unwrap();
                let signs = k.signs.relu_signs(g, cin * h * w, &bb, &bits);
                let d = k
                    .conv
                    .backward_input_bitmask(g, dims, &grb, &kb, &bits, &out);
                submit_all(g, &[&signs, &d]);
                let want_bits: Vec<u32> = below
                    .chunks(32)
                    .map(|c| {
                        c.iter()
                            .enumerate()
                            .fold(0, |a, (k, &v)| a | ((v > 0.0) as u32) << k)
                    })
                    .collect();
                let got_bits: Vec<u32> = g
                    .read(&bits, words)
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(got_bits, want_bits, "relu_signs {cin}x{h}x{w}");
                check(
                    &format!("conv_backward_input_bitmask (tile {tile}) {cin}->{cout} {h}x{w}"),
                    &g.read(&out, cin * h * w).unwrap(),
                    &want,
                    tol,
                );
            }
        }
    }
}

#[test]
fn f16_storage_convolutions_match_reference() {
    let g = &ctx().gpu;
    if !g.features.contains(wgpu::Features::SHADER_F16) {
        println!("SKIPPED: {} has no shader-f16", g.info.name);
        return;
    }
    let mut r = rng(9);
    let gemm8 = Tiling::Gemm8 {
        channels: 128,
        k: 8,
    };
    // (And the cooperative-matrix variant where offered: f16 operands on top of f16 maps.)
    let tilings = [
        (Tiling::Registers(8), 1e-3),
        (Tiling::Workgroup, 1e-3),
        (gemm8, 1e-3),
    ];
    let mixed = precision::mixed_tiling(g).ok().map(|t| (t, MIXED_TOL));
    for (tiling, tol) in tilings.into_iter().chain(mixed) {
        let k = Kernels::with_options(g, tiling, Storage::F16).unwrap();
        for (cin, cout, h, w) in [(3, 64, 7, 5), (20, 130, 9, 10), (64, 5, 9, 6)] {
            // Feature maps hold f16 values; the reference gets exactly those.
            let (x, _) = random(&mut r, cin * h * w, -1.0, 1.0);
            let x = round_f16(&x);
            let (wt, kd) = random(&mut r, 9 * cin * cout, -0.3, 0.3);
            let (b, bd) = random(&mut r, cout, -0.2, 0.2);
            let xb = features_from(g, &k, &x);
            let kb = g
                .storage_from("k", &pad_forward_weights(&wt, cin, cout, tiling.pad()))
                .unwrap();
            let bb = g.storage_from("b", &b).unwrap();
            let out = k.feature_map(g, "out", cout * h * w).unwrap();
            submit_all(
                g,
                &[&k.conv
                    .forward(g, ((cin, cout, h, w), false), &xb, &kb, &bb, &out)],
            );
            let want = reference::conv_forward(&common::to_f64(&x), &kd, &bd, (cin, cout, h, w));
            // The output is stored as f16: 2^-11 relative rounding.
            check(
                &format!("f16 conv_forward ({tiling}) {cin}->{cout} {h}x{w}"),
                &read_features(g, &k, &out, cout * h * w),
                &want,
                tol,
            );

            // Backward: the gradients are f16 too, and the ReLU mask comes from an f16 map.
            let (gr, _) = random(&mut r, cout * h * w, -1.0, 1.0);
            let gr = round_f16(&gr);
            let grd = common::to_f64(&gr);
            let ones = vec![1.0; cout * h * w];
            let (below, _) = random(&mut r, cin * h * w, -1.0, 1.0);
            let below = round_f16(&below.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
            let grb = features_from(g, &k, &gr);
            let kb = g
                .storage_from("k", &pad_backward_weights(&wt, cin, cout, tiling.pad()))
                .unwrap();
            let bb = features_from(g, &k, &below);
            let out = k.feature_map(g, "out", cin * h * w).unwrap();
            let d =
                k.conv
                    .backward_input(g, ((cin, cout, h, w), false), &grb, &kb, Some(&bb), &out);
            submit_all(g, &[&d]);
            let mut want = reference::conv_backward_input(&grd, &ones, &kd, (cin, cout, h, w));
            want.iter_mut().zip(&below).for_each(|(v, b)| {
                if *b <= 0.0 {
                    *v = 0.0
                }
            });
            // The output is stored as f16: 2^-11 relative rounding.
            check(
                &format!("f16 conv_backward_input ({tiling}) {cin}->{cout} {h}x{w}"),
                &read_features(g, &k, &out, cin * h * w),
                &want,
                tol,
            );
        }
    }
}

#[test]
fn pool_forward_and_backward_match_reference() {
    let c = ctx();
    let g = &c.gpu;
    let mut r = rng(3);
    // Widths past 16 windows: several route words a row, the last one partial.
    for (ch, h, w) in [
        (3, 7, 5),
        (5, 33, 17),
        (64, 2, 2),
        (1, 1, 1),
        (2, 3, 9),
        (3, 4, 37),
    ] {
        for mode in [Pooling::Max, Pooling::Avg] {
            let (x, mut xd) = random(&mut r, ch * h * w, -1.0, 1.0);
            // A few exact ties: the gradient must go to the first maximum.
            let mut x = x;
            for i in (0..x.len()).step_by(7) {
                if i + 1 < x.len() {
                    x[i + 1] = x[i];
                    xd[i + 1] = xd[i];
                }
            }
            let (oh, ow) = (h / 2, w / 2);
            let (gr, grd) = random(&mut r, ch * oh * ow, -1.0, 1.0);
            let xb = g.storage_from("x", &x).unwrap();
            let gb = g.storage_from("g", &gr).unwrap();
            let out = g.storage("out", ch * oh * ow).unwrap();
            // Filled with a sentinel: every element, dropped rows and columns included, must be written.
            let gin = g.storage_from("gin", &vec![7.0; ch * h * w]).unwrap();
            // Filled with ones: every word must be written.
            let routes = g
                .storage_from(
                    "routes",
                    &vec![f32::from_bits(!0); pool::routes_len((ch, h, w))],
                )
                .unwrap();
            // With the mask (the input came from a ReLU), the gradient is zero where x <= 0.
            let mask = mode == Pooling::Avg || ch % 2 == 1;
            let f = c
                .kernels
                .pool
                .forward(g, (ch, h, w), mode, mask, &xb, &out, &routes);
            let b = c
                .kernels
                .pool
                .backward(g, (ch, h, w), mode, &routes, &gb, &gin);
            submit_all(g, &[&f, &b]);
            let name = format!("pool {mode:?} {ch}x{h}x{w}");
            if oh * ow > 0 {
                let got = g.read(&out, ch * oh * ow).unwrap();
                check(
                    &format!("{name} forward"),
                    &got,
                    &reference::pool_forward(&xd, (ch, h, w), mode),
                    TOL,
                );
            }
            let got = g.read(&gin, ch * h * w).unwrap();
            let mut want = reference::pool_backward(&xd, &grd, (ch, h, w), mode);
            if mask {
                want.iter_mut().zip(&xd).for_each(|(v, x)| {
                    if *x <= 0.0 {
                        *v = 0.0
                    }
                });
            }
            if oh * ow > 0 {
                check(&format!("{name} backward"), &got, &want, TOL);
            } else {
                assert!(
                    got.iter().all(|&v| v == 0.0),
                    "{name}: no window, zero gradient"
                );
            }
        }
    }
}

#[test]
fn gram_and_style_loss_match_reference() {
    let g = &ctx().gpu;
    let two = grad_scale(g, 2.0);
    let mut r = rng(4);
    // (13, 5000) and (9, 2049) split the positions into chunks (partial Grams + reduce);
    // (130, 201) spans 3 x 3 tiles of 64 (off-diagonal ones mirrored) and partial steps.
    let shapes = [
        (1, 1),
        (3, 35),
        (5, 7 * 5),
        (64, 33 * 17),
        (13, 1),
        (13, 5000),
        (9, 2049),
        (130, 201),
    ];
    // Every Gram kernel family (the register tilings share one), and the cooperative one
    // where the adapter offers it.
    let gram_tilings = [(Tiling::Registers(8), TOL), (Tiling::Workgroup, TOL)];
    let mixed = mixed_tilings(g).into_iter().filter(|(t, _)| t.gram() == *t);
    for (tiling, tol) in gram_tilings.into_iter().chain(mixed) {
        let kernels = Kernels::with_tiling(g, tiling).unwrap();
        for (n, m) in shapes {
            // Post-ReLU features, zero about a third of the time.
            let (f, fd) = random(&mut r, n * m, -1.0, 2.0);
            let f: Vec<f32> = f.iter().map(|v| v.max(0.0)).collect();
            let fd: Vec<f64> = fd.iter().map(|v| v.max(0.0)).collect();
            // A target Gram matrix: symmetric, like every Gram (style_grad relies on it).
            let (a, ad) = random(&mut r, n * n, 0.0, m as f32);
            let sym = |v: &[f32]| -> Vec<f32> {
                (0..n * n)
                    .map(|k| v[(k / n).min(k % n) * n + (k / n).max(k % n)])
                    .collect()
            };
            let a = sym(&a);
            let ad: Vec<f64> = (0..n * n)
                .map(|k| ad[(k / n).min(k % n) * n + (k / n).max(k % n)])
                .collect();
            let fb = g.storage_from("f", &f).unwrap();
            let ab = g.storage_from("a", &a).unwrap();
            let gb = g.storage("g", n * n).unwrap();
            let loss = g.storage("loss", 2).unwrap();
            let (d0, d1) = random(&mut r, n * m, -1.0, 1.0);
            let dst = g.storage_from("dst", &d0).unwrap();
            let coef = 0.75f32;
            let gram = kernels.gram.matrix(g, (n, m), &fb, &gb).unwrap();
            let scale = (1.0 / (4.0 * (n * n * m * m) as f64)) as f32;
            let val = kernels
                .loss
                .sq_diff_sum(g, (n * n, false), scale, (&gb, &ab), (&loss, 1));
            let grad = kernels
                .gram
                // Under a gradient scale of 2 (kernels::preprocess), half the coefficient.
                .style_grad(g, (n, m), coef * 0.5, true, &fb, &gb, &ab, (&dst, &two));
            submit_all(g, &[&gram, &val, &grad]);
            let gram_ref = reference::gram(&fd, n, m);
            check(
                &format!("gram ({tiling}) {n}x{m}"),
                &g.read(&gb, n * n).unwrap(),
                &gram_ref,
                tol,
            );
            let l = g.read(&loss, 2).unwrap()[1];
            check(
                &format!("style loss ({tiling}) {n}x{m}"),
                &[l],
                &[reference::style_loss(&gram_ref, &ad, n, m)],
                tol,
            );
            // The kernel's coef is weight / (n² m²); the reference's gradient carries 1 / (n² m²).
            let sg = reference::style_grad(&fd, &gram_ref, &ad, n, m);
            let nm2 = (n * n * m * m) as f64;
            // The ReLU mask of the backward is fused: no gradient where the feature is 0.
            let want: Vec<f64> = d1
                .iter()
                .zip(&sg)
                .zip(&fd)
                .map(|((d, s), f)| {
                    if *f > 0.0 {
                        d + coef as f64 * nm2 * s
                    } else {
                        *d
                    }
                })
                .collect();
            check(
                &format!("style grad ({tiling}) {n}x{m}"),
                &g.read(&dst, n * m).unwrap(),
                &want,
                tol,
            );
        }
    }
}

#[test]
fn content_loss_and_grad_match_reference() {
    let c = ctx();
    let g = &c.gpu;
    let two = grad_scale(g, 2.0);
    let mut r = rng(5);
    for len in [1, 35, 5 * 33 * 17, 70_000] {
        let (f, fd) = random(&mut r, len, -1.0, 3.0);
        let f: Vec<f32> = f.iter().map(|v| v.max(0.0)).collect();
        let fd: Vec<f64> = fd.iter().map(|v| v.max(0.0)).collect();
        let (t, td) = random(&mut r, len, 0.0, 3.0);
        let (d0, d0d) = random(&mut r, len, -1.0, 1.0);
        let fb = g.storage_from("f", &f).unwrap();
        let tb = g.storage_from("t", &t).unwrap();
        let loss = g.storage("loss", 3).unwrap();
        let acc = g.storage_from("acc", &d0).unwrap();
        let over = g.storage_from("over", &d0).unwrap();
        let v = c
            .kernels
            .loss
            .sq_diff_sum(g, (len, false), 0.5, (&fb, &tb), (&loss, 2));
        let ga = c
            .kernels
            .loss
            .content_grad(g, len, 0.15, true, &fb, &tb, (&acc, &two));
        let go = c
            .kernels
            .loss
            .content_grad(g, len, 0.15, false, &fb, &tb, (&over, &two));
        submit_all(g, &[&v, &ga, &go]);
        check(
            &format!("content loss {len}"),
            &[g.read(&loss, 3).unwrap()[2]],
            &[reference::content_loss(&fd, &td)],
            TOL,
        );
        // Masked where the (post-ReLU) feature is 0: the backward's ReLU mask is fused here.
        let cg: Vec<f64> = reference::content_grad(&fd, &td)
            .iter()
            .zip(&fd)
            .map(|(c, f)| if *f > 0.0 { *c } else { 0.0 })
            .collect();
        let want_acc: Vec<f64> = d0d.iter().zip(&cg).map(|(d, c)| d + 0.3 * c).collect();
        let want_over: Vec<f64> = cg.iter().map(|c| 0.3 * c).collect();
        check(
            &format!("content grad (accumulate) {len}"),
            &g.read(&acc, len).unwrap(),
            &want_acc,
            TOL,
        );
        check(
            &format!("content grad (overwrite) {len}"),
            &g.read(&over, len).unwrap(),
            &want_over,
            TOL,
        );
    }
}

#[test]
fn tv_loss_and_grad_match_reference() {
    let c = ctx();
    let g = &c.gpu;
    let mut r = rng(6);
    // With and without the wrap (--seamless), 1- and 2-wide images included.
    for (ch, h, w, wrap) in [
        (3, 1, 1, false),
        (3, 7, 5, false),
        (3, 33, 17, false),
        (1, 64, 3, false),
        (3, 7, 5, true),
        (2, 1, 6, true),
        (1, 2, 9, true),
        (3, 33, 17, true),
    ] {
        let n = ch * h * w;
        let (x, xd) = random(&mut r, n, 0.0, 1.0);
        let (d0, d0d) = random(&mut r, n, -1.0, 1.0);
        let xb = g.storage_from("x", &x).unwrap();
        let dst = g.storage_from("d", &d0).unwrap();
        let loss = g.storage("loss", 1).unwrap();
        let image = ((ch, h, w), wrap);
        let v = c.kernels.loss.tv_sum(g, image, 2.0, &xb, (&loss, 0));
        let gr = c.kernels.loss.tv_grad(g, image, 0.5, &xb, &dst);
        submit_all(g, &[&v, &gr]);
        let want_l = 2.0 * reference::tv_loss_padded(&xd, (ch, h, w), wrap);
        check(
            &format!("tv loss {ch}x{h}x{w} wrap {wrap}"),
            &[g.read(&loss, 1).unwrap()[0]],
            &[want_l],
            TOL,
        );
        let tg = reference::tv_grad_padded(&xd, (ch, h, w), wrap);
        let want: Vec<f64> = d0d.iter().zip(&tg).map(|(d, t)| d + 0.5 * t).collect();
        check(
            &format!("tv grad {ch}x{h}x{w} wrap {wrap}"),
            &g.read(&dst, n).unwrap(),
            &want,
            TOL,
        );
    }
}

/// The software driver stops a shader loop silently after 65535 iterations: sums over more
/// than 256 · 65535 elements (a 64-channel map at 700 px, a 4K image's TV) must still be whole.
#[test]
fn sums_over_millions_of_elements_are_whole() {
    let c = ctx();
    let g = &c.gpu;
    let mut r = rng(10);
    let (ch, h, w) = (3, 2400, 2400);
    let len = ch * h * w;
    let (x, xd) = random(&mut r, len, 0.0, 1.0);
    let (y, yd) = random(&mut r, len, 0.0, 1.0);
    let (xb, yb) = (
        g.storage_from("x", &x).unwrap(),
        g.storage_from("y", &y).unwrap(),
    );
    let loss = g.storage("loss", 2).unwrap();
    let k = &c.kernels.loss;
    let sq = k.sq_diff_sum(g, (len, false), 0.5, (&xb, &yb), (&loss, 0));
    let tv = k.tv_sum(g, ((ch, h, w), false), 2.0, &xb, (&loss, 1));
    assert!(
        sq.len() > 1 && tv.len() > 1,
        "long sums take several dispatches"
    );
    submit_all(g, &[&sq, &tv]);
    let got = g.read(&loss, 2).unwrap();
    let want_sq: f64 = 0.5
        * xd.iter()
            .zip(&yd)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>();
    let want_tv = 2.0 * reference::tv_loss(&xd, (ch, h, w));
    check(
        &format!("sq_diff_sum of {len}"),
        &got[..1],
        &[want_sq],
        1e-4,
    );
    check(
        &format!("tv_sum of {ch}x{h}x{w}"),
        &got[1..],
        &[want_tv],
        1e-4,
    );
}

#[test]
fn preprocess_matches_reference_for_both_conventions() {
    let c = ctx();
    let g = &c.gpu;
    let one = grad_scale(g, 1.0);
    let mut r = rng(7);
    for conv in [Convention::Caffe, Convention::Torch] {
        let a: Affine = conv.affine();
        for hw in [1, 35, 561] {
            let (x, xd) = random(&mut r, 3 * hw, 0.0, 1.0);
            let (gr, grd) = random(&mut r, 3 * hw, -1.0, 1.0);
            let xb = g.storage_from("x", &x).unwrap();
            let gb = g.storage_from("g", &gr).unwrap();
            let out = g.storage("out", 3 * hw).unwrap();
            let gx = g.storage("gx", 3 * hw).unwrap();
            let f = c.kernels.preprocess.forward(g, hw, &a, &xb, &out);
            let b = c.kernels.preprocess.backward(g, hw, &a, &gb, &gx, &one);
            submit(g, &[], &[&f, &b]);
            check(
                &format!("preprocess {conv:?} {hw}"),
                &g.read(&out, 3 * hw).unwrap(),
                &reference::preprocess(&xd, hw, &a),
                TOL,
            );
            check(
                &format!("preprocess backward {conv:?} {hw}"),
                &g.read(&gx, 3 * hw).unwrap(),
                &reference::preprocess_backward(&grd, hw, &a),
                TOL,
            );
        }
    }
    // The conventions themselves, from their definitions.
    let caffe = reference::preprocess(&[0.5, 0.25, 1.0], 1, &Convention::Caffe.affine());
    let want = [
        255.0 - 103.939,
        0.25 * 255.0 - 116.779,
        0.5 * 255.0 - 123.68,
    ];
    caffe
        .iter()
        .zip(want)
        .for_each(|(g, w)| assert!((g - w).abs() < 1e-3, "caffe {g} vs {w}"));
    let torch = reference::preprocess(&[0.5, 0.25, 1.0], 1, &Convention::Torch.affine());
    let want = [
        (0.5 - 0.485) / 0.229,
        (0.25 - 0.456) / 0.224,
        (1.0 - 0.406) / 0.225,
    ];
    torch
        .iter()
        .zip(want)
        .for_each(|(g, w)| assert!((g - w).abs() < 1e-5, "torch {g} vs {w}"));
}

#[test]
fn adam_matches_reference_over_several_steps() {
    let c = ctx();
    let g = &c.gpu;
    let mut r = rng(8);
    let n = 3 * 7 * 5;
    let cfg = AdamConfig {
        lr: 0.02,
        beta1: 0.99,
        beta2: 0.999,
        eps: 0.1,
    };
    let (x, mut xd) = random(&mut r, n, 0.0, 1.0);
    let xb = g.storage_from("x", &x).unwrap();
    let gb = g.storage("g", n).unwrap();
    let scale = grad_scale(g, 8.0);
    let adam =
        impasto::pipeline::adam::Adam::new(g, &c.kernels, &cfg, &xb, &gb, &scale, n).unwrap();
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let update = c.kernels.preprocess.scale_update(g, &scale);
    let state = || -> Vec<u32> {
        g.read(&scale, 4)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let mut t = 0;
    for step in 1..=7 {
        // Large gradients push some pixels past [0, 1]: the clamp must act.
        let (gr, grd) = random(&mut r, n, -50.0, 50.0);
        g.write(&gb, &gr);
        // Steps 3 and 6 overflowed (the flag preprocess_backward raises): skipped, the step
        // count included; then the scale halves.
        let overflow = step % 3 == 0;
        if overflow {
            let mut s = state();
            s[2] = 1;
            g.write(&scale, bytemuck::cast_slice(&s));
        }
        submit(g, &[], &[&adam.dispatches[0], &adam.dispatches[1], &update]);
        if !overflow {
            t += 1;
            reference::adam_step(&mut xd, &mut m, &mut v, &grd, t, &cfg);
        }
        check(
            &format!("adam step {step} (t = {t})"),
            &g.read(&xb, n).unwrap(),
            &xd,
            TOL,
        );
    }
    let s = state();
    assert_eq!(
        (f32::from_bits(s[0]), f32::from_bits(s[1]), s[2], s[3]),
        (2.0, 0.5, 0, 2),
        "the scale halved at each overflow, the flag lowered, two steps skipped"
    );
}

#[test]
fn loss_sums_are_deterministic() {
    let c = ctx();
    let g = &c.gpu;
    let mut r = rng(9);
    let len = 300_001;
    let (a, _) = random(&mut r, len, -1.0, 1.0);
    let (b, _) = random(&mut r, len, -1.0, 1.0);
    let ab = g.storage_from("a", &a).unwrap();
    let bb = g.storage_from("b", &b).unwrap();
    let loss = g.storage("loss", 1).unwrap();
    let d = c
        .kernels
        .loss
        .sq_diff_sum(g, (len, false), 1.0, (&ab, &bb), (&loss, 0));
    let first = g
        .read(
            &{
                submit_all(g, &[&d]);
                loss.clone()
            },
            1,
        )
        .unwrap()[0];
    for _ in 0..5 {
        submit_all(g, &[&d]);
        assert_eq!(g.read(&loss, 1).unwrap()[0].to_bits(), first.to_bits());
    }
}

/// Mixed precision where the adapter offers cooperative matrices: the check against f32 passes.
/// Where it does not (lavapipe before Mesa 25.2, SwiftShader): the kernels are refused with a
/// message naming the adapter, and nothing crashes.
#[test]
fn mixed_precision_is_checked_or_refused() {
    let g = &ctx().gpu;
    match precision::mixed_tiling(g) {
        Ok(_) => {
            for (t, _) in mixed_tilings(g) {
                let check = precision::check_mixed(g, Variants::uniform(t)).unwrap();
                println!("{t} against f32: {}", check.describe());
                assert_eq!(check.refusal(precision::MIXED_TOLERANCE), None);
                // f16 operands cost something: a check that measured nothing measured wrong.
                assert!(check.worst() > 1e-6, "{}", check.describe());
            }
        }
        Err(why) => {
            println!("not offered: {why}");
            assert!(why.contains(&g.info.name), "{why}");
            for t in impasto::kernels::MIXED_TILINGS {
                let e = Kernels::with_tiling(g, t).err().expect("refused");
                assert!(format!("{e}").contains("cooperative matrices"), "{e}");
            }
        }
    }
}

/// The check itself: two f32 tilings agree to f32 rounding (summed in other orders), and a
/// tolerance below what it measured refuses, naming the problem and its error.
#[test]
fn the_precision_check_measures_and_refuses() {
    let g = &ctx().gpu;
    let regs = Kernels::with_tiling(g, Tiling::Registers(8)).unwrap();
    let gemm = Kernels::with_tiling(g, Tiling::Workgroup).unwrap();
    let check = precision::compare(g, &regs, &gemm).unwrap();
    println!("regs8 against gemm64: {}", check.describe());
    assert_eq!(check.errors.len(), 6);
    assert!(check.worst() < 1e-5, "{}", check.describe());
    assert_eq!(check.refusal(1e-5), None);
    assert!(check.worst() > 0.0, "{}", check.describe());
    let refused = check.refusal(check.worst() / 2.0).expect("refused");
    assert!(
        refused.contains("conv") || refused.contains("gram"),
        "{refused}"
    );
}
