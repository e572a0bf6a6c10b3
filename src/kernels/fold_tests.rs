//! The tiled kernels fold their workgroups along x into y past the dispatch limit (65535).
//! Real inputs reach it only at large sizes, so these tests lower the limit (a crate-private
//! knob) and check the folded launches against the CPU reference.

use rand::{Rng, SeedableRng};

use super::{conv, Kernels, Tiling};
use crate::gpu::{submit, Gpu};
use crate::reference;

fn random(r: &mut impl Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Within 1e-4 of the result's scale; 4e-3 for the variants on f16 operands (mixed
/// precision).
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    let scale = want.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    let tol = if what.contains("coop") { 4e-3 } else { 1e-4 };
    assert!(
        err / scale <= tol,
        "{what}: relative error {:.2e}",
        err / scale
    );
}

#[test]
fn folded_launches_match_reference() {
    let gpu = Gpu::new(None).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    let g = &gpu;
    let mut r = rand::rngs::StdRng::seed_from_u64(7);
    // The GEMM tiling folds the convolutions and the style gradient; the register tilings
    // fold the style gradient only (one is enough: they share gram.wgsl); the cooperative
    // ones, where the adapter offers them, their convolutions.
    let offered =
        (super::MIXED_TILINGS.into_iter()).filter(|&t| super::setup::not_offered(g, t).is_none());
    for tiling in [Tiling::Registers(8), Tiling::Workgroup]
        .into_iter()
        .chain(offered)
    {
        let mut k = Kernels::with_tiling(g, tiling).unwrap();
        k.set_fold_limit(3);
        // Enough pixel tiles (gemm64: 64 pixels each) and position tiles to fold.
        let (cin, cout, h, w) = (20, 70, 17, 31);
        let x = random(&mut r, cin * h * w, -1.0, 1.0);
        let wt = random(&mut r, 9 * cin * cout, -0.3, 0.3);
        let b = random(&mut r, cout, -0.2, 0.2);
        let xb = g.storage_from("x", &x).unwrap();
        let fw = conv::pad_forward_weights(&wt, cin, cout, tiling.pad());
        let bw = conv::pad_backward_weights(&wt, cin, cout, tiling.pad());
        let (kb, kt) = (
            g.storage_from("k", &fw).unwrap(),
            g.storage_from("kt", &bw).unwrap(),
        );
        let bb = g.storage_from("b", &b).unwrap();
        let out = g.storage("out", cout * h * w).unwrap();
        let back = g.storage("back", cin * h * w).unwrap();
        let fwd = k
            .conv
            .forward(g, ((cin, cout, h, w), false), &xb, &kb, &bb, &out);
        // The forward's output is post-ReLU: feed it back as the (masked) gradient.
        let bwd = k
            .conv
            .backward_input(g, ((cin, cout, h, w), false), &out, &kt, None, &back);
        assert!(fwd[0].groups[1] > 1 || matches!(tiling, Tiling::Registers(_)));
        submit(g, &[], &fwd.iter().chain(&bwd).collect::<Vec<_>>());
        let act = reference::conv_forward(&f64s(&x), &f64s(&wt), &f64s(&b), (cin, cout, h, w));
        assert_close(
            &format!("conv_forward {tiling}"),
            &g.read(&out, cout * h * w).unwrap(),
            &act,
        );
        let want = reference::conv_backward_input(&act, &act, &f64s(&wt), (cin, cout, h, w));
        assert_close(
            &format!("conv_backward {tiling}"),
            &g.read(&back, cin * h * w).unwrap(),
            &want,
        );

        folded_style_grad(g, &k, tiling, &mut r);
    }
}

/// The style gradient over n x m features, folded along the positions.
fn folded_style_grad(g: &Gpu, k: &Kernels, tiling: Tiling, r: &mut rand::rngs::StdRng) {
    let (n, m) = (9, 4000);
    let f: Vec<f32> = random(r, n * m, -1.0, 2.0)
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    let a: Vec<f32> = (0..n * n).map(|i| ((i / n + i % n) % 5) as f32).collect();
    let fb = g.storage_from("f", &f).unwrap();
    let ab = g.storage_from("a", &a).unwrap();
    let gb = g.storage("g", n * n).unwrap();
    let dst = g.storage("dst", n * m).unwrap();
    let mut d = k.gram.matrix(g, (n, m), &fb, &gb).unwrap();
    let scale = g
        .storage_from(
            "gradient scale",
            bytemuck::cast_slice(&super::preprocess::initial_grad_scale(1.0)),
        )
        .unwrap();
    d.extend(
        k.gram
            .style_grad(g, (n, m), 0.5, false, &fb, &gb, &ab, (&dst, &scale)),
    );
    assert!(
        d.last().unwrap().groups[1] > 1,
        "{tiling}: style_grad did not fold"
    );
    submit(g, &[], &d.iter().collect::<Vec<_>>());
    let fd = f64s(&f);
    let gram = reference::gram(&fd, n, m);
    let mut want = reference::style_grad(&fd, &gram, &f64s(&a), n, m);
    let scale = 0.5 * (n * n * m * m) as f64;
    want.iter_mut()
        .zip(&fd)
        .for_each(|(v, f)| *v = if *f > 0.0 { *v * scale } else { 0.0 });
    assert_close(
        &format!("style_grad {tiling}"),
        &g.read(&dst, n * m).unwrap(),
        &want,
    );
}
