//! The CPU engine: each kernel against the f64 reference on awkward shapes, the whole
//! objective's image gradient against the reference, and bit-identical reruns.

mod common;

use common::{check, random, rng, to_f64, CONV_SHAPES};
use impasto::cpu::kernels::{self as k, Scheme};
use impasto::cpu::{CpuSession, Setup};
use impasto::model::{Arch, EngineSession, Image, LossConfig, Pooling, StyleLossKind};
use impasto::reference;
use impasto::weights::Weights;

const TOL: f64 = 1e-4;

/// Every scheme on the awkward shapes, and Winograd's chunking on shapes of its own: a map
/// wider than a chunk's row segment (64 blocks), chunks of several block rows, wide channels.
#[test]
fn conv_forward_and_input_gradient_match_reference() {
    println!("SIMD: {}", impasto::cpu::simd_level());
    let mut r = rng(31);
    let schemes = [Scheme::Direct, Scheme::Winograd(2), Scheme::Winograd(4)];
    for shape in CONV_SHAPES {
        for scheme in schemes {
            conv_case(&mut r, shape, scheme);
        }
    }
    for shape in [(4, 6, 5, 290), (130, 140, 21, 18), (24, 9, 70, 3)] {
        for scheme in &schemes[1..] {
            conv_case(&mut r, shape, *scheme);
        }
    }
}

/// The kernels' narrower SIMD paths too: the test above again in a child process with
/// `IMPASTO_CPU_SIMD` capping what this machine would otherwise run widest.
#[test]
fn conv_kernels_match_reference_on_every_simd_path() {
    if std::env::var_os("IMPASTO_CPU_SIMD").is_some() {
        return;
    }
    for (cap, name) in [("avx2", "AVX2+FMA"), ("plain", "SSE")] {
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["conv_forward_and_input_gradient_match_reference", "--exact"])
            .args(["--nocapture", "--test-threads", "1"])
            .env("IMPASTO_CPU_SIMD", cap)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{cap}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.contains("1 passed") && out.contains("winograd4 130->140"),
            "{out}"
        );
        // (Capped only where the CPU has more: an AVX2 machine runs its own path above.)
        let level = out.split("SIMD: ").nth(1).and_then(|l| l.lines().next());
        let level = level.unwrap_or_else(|| panic!("no SIMD line: {out}"));
        assert!(
            level == name || cfg!(not(target_arch = "x86_64")) || level == "SSE",
            "{level}"
        );
    }
}

fn conv_case(
    r: &mut rand::rngs::StdRng, (cin, cout, h, w): (usize, usize, usize, usize), scheme: Scheme,
) {
    let what = |name: &str| format!("cpu {name} {} {cin}->{cout} {h}x{w}", scheme.name());
    let (x, xd) = random(r, cin * h * w, -1.0, 1.0);
    let (wt, kd) = random(r, 9 * cin * cout, -0.3, 0.3);
    let (b, bd) = random(r, cout, -0.2, 0.2);
    let mut out = vec![7.0; cout * k::plane(h, w)];
    let taps = k::forward_taps(&wt, cin, cout, scheme);
    k::conv_forward(
        &k::pad(&x, (cin, h, w)),
        &taps,
        &b,
        (cin, cout, h, w),
        &mut out,
    );
    let want = reference::conv_forward(&xd, &kd, &bd, (cin, cout, h, w));
    let got = k::unpad(&out, (cout, h, w));
    check(&what("conv_forward"), &got, &want, TOL);
    assert!(k::pad(&got, (cout, h, w)) == out, "border not zero");

    // The gradient arrives masked by this layer's ReLU; every other shape the input came
    // from a ReLU too, so the result must leave masked.
    let act: Vec<f64> = want.clone();
    let (masked, grd, (below, belowd)) = common::backward_case(r, &act, (cin, cout, h, w));
    let input_relu = (cin + h) % 2 == 0;
    let below_p = k::pad(&below, (cin, h, w));
    // The input's ReLU mask from its values, or from its signs as bits.
    let mut bits = vec![!0; below_p.len().div_ceil(32)];
    k::relu_signs(&below_p, &mut bits);
    let want = common::conv_backward_reference(
        (&grd, &act, &kd),
        input_relu.then_some(&belowd[..]),
        ((cin, cout, h, w), false),
    );
    let taps = k::backward_taps(&wt, cin, cout, scheme);
    for (name, mask) in [
        (
            "values",
            input_relu.then_some(k::InputRelu::Values(&below_p)),
        ),
        ("signs", input_relu.then_some(k::InputRelu::Signs(&bits))),
    ] {
        let mut dst = vec![7.0; cin * k::plane(h, w)];
        let grad = k::pad(&masked, (cout, h, w));
        k::conv_backward_input(&grad, &taps, mask, (cin, cout, h, w), &mut dst);
        check(
            &what(&format!("conv_backward_input (mask from {name})")),
            &k::unpad(&dst, (cin, h, w)),
            &want,
            TOL,
        );
    }
}

#[test]
fn pool_gram_and_loss_gradients_match_reference() {
    let mut r = rng(32);
    for (c, h, w) in [(3, 7, 5), (13, 8, 9), (5, 1, 1), (64, 16, 16), (3, 6, 37)] {
        for mode in [Pooling::Max, Pooling::Avg] {
            let (mut x, mut xd) = random(&mut r, c * h * w, -1.0, 1.0);
            // A few exact ties: the gradient must go to the first maximum.
            for i in (0..x.len().saturating_sub(1)).step_by(7) {
                x[i + 1] = x[i];
                xd[i + 1] = xd[i];
            }
            let xp = k::pad(&x, (c, h, w));
            // With the mask (the input came from a ReLU), no gradient where x <= 0.
            let mask = mode == Pooling::Avg || c % 2 == 1;
            let mut out = vec![7.0; c * k::plane(h / 2, w / 2)];
            let mut routes = vec![!0; k::routes_len((c, h, w))];
            k::pool_forward(&xp, (c, h, w), mode, mask, &mut out, &mut routes);
            let want = reference::pool_forward(&xd, (c, h, w), mode);
            if !want.is_empty() {
                check(
                    &format!("cpu pool_forward {c}x{h}x{w} {mode:?}"),
                    &k::unpad(&out, (c, h / 2, w / 2)),
                    &want,
                    TOL,
                );
            }
            let (g, gd) = random(&mut r, c * (h / 2) * (w / 2), -1.0, 1.0);
            let mut dst = vec![7.0; c * k::plane(h, w)];
            k::pool_backward(
                &routes,
                &k::pad(&g, (c, h / 2, w / 2)),
                (c, h, w),
                mode,
                &mut dst,
            );
            let mut want = reference::pool_backward(&xd, &gd, (c, h, w), mode);
            if mask {
                want.iter_mut()
                    .zip(&xd)
                    .filter(|(_, &x)| x <= 0.0)
                    .for_each(|(v, _)| *v = 0.0);
            }
            let got = k::unpad(&dst, (c, h, w));
            if want.iter().all(|&v| v == 0.0) {
                assert!(got.iter().all(|&v| v == 0.0), "{c}x{h}x{w}: zero gradient");
            } else {
                check(
                    &format!("cpu pool_backward {c}x{h}x{w} {mode:?}"),
                    &got,
                    &want,
                    TOL,
                );
            }
        }
    }
    for (n, h, w) in [
        (1, 1, 1),
        (3, 5, 7),
        (13, 20, 25),
        (64, 9, 13),
        (130, 10, 20),
    ] {
        let m = h * w;
        let (f, fd) = random(&mut r, n * m, -1.0, 2.0);
        let f: Vec<f32> = f.iter().map(|v| v.max(0.0)).collect();
        let fd: Vec<f64> = fd.iter().map(|v| v.max(0.0)).collect();
        let fp = k::pad(&f, (n, h, w));
        let mut g = vec![0.0; n * n];
        k::gram(&fp, n, (h, w), &mut g, &mut Vec::new());
        let gd = reference::gram(&fd, n, m);
        check(&format!("cpu gram {n}x{m}"), &g, &gd, TOL);
        let (a, _) = random(&mut r, n * n, 0.0, m as f32);
        let a: Vec<f32> = (0..n * n)
            .map(|q| a[(q / n).min(q % n) * n + (q / n).max(q % n)])
            .collect();
        let coef = 0.75f32;
        let (d0, d0d) = random(&mut r, n * m, -1.0, 1.0);
        // A gradient from above is zero where F is (as every masked gradient is).
        let d0: Vec<f32> = d0
            .iter()
            .zip(&f)
            .map(|(d, f)| if *f > 0.0 { *d } else { 0.0 })
            .collect();
        let mut grad = k::pad(&d0, (n, h, w));
        let mut scratch = Vec::new();
        k::style_grad(
            (&fp, &fp),
            &g,
            &a,
            n,
            (h, w),
            coef,
            true,
            &mut grad,
            &mut scratch,
        );
        let sg = reference::style_grad(&fd, &gd, &to_f64(&a), n, m);
        let scale = coef as f64 * (n * n * m * m) as f64;
        let want: Vec<f64> = (0..n * m)
            .map(|q| {
                if fd[q] > 0.0 {
                    d0d[q] * (fd[q] > 0.0) as u8 as f64 + scale * sg[q]
                } else {
                    0.0
                }
            })
            .collect();
        check(
            &format!("cpu style_grad {n}x{m}"),
            &k::unpad(&grad, (n, h, w)),
            &want,
            TOL,
        );
    }
}

type LayerWeights = [(Vec<f64>, Vec<f64>)];

fn model_with<'a>(
    stages: &'a [impasto::model::Stage], cw: &'a LayerWeights, affine: impasto::model::Affine,
    loss: &'a LossConfig,
) -> reference::Model<'a> {
    reference::Model {
        stages,
        weights: cw,
        affine,
        loss,
    }
}

/// Real weights of VGG19's first three convolutions (shipped), a 20x14 image, two styles.
type Parts = (Arch, Weights, LossConfig, Image, Vec<(Image, f64)>);

fn setup_parts() -> Parts {
    setup_parts_at(20)
}

/// The real weights, a content image `size` px on its longest side and two blended styles.
fn setup_parts_at(size: usize) -> Parts {
    let arch = Arch::vgg19();
    let weights = Weights::load(&common::real_weights()).unwrap();
    let loss = common::loss_at(
        vec![arch.layer_index("block2_conv1").unwrap()],
        vec![0, 1, 2],
    );
    let load = |n: &str, s| impasto::io::image::load(&common::image(n), Some(s)).unwrap();
    let content = load("tubingen.jpg", size);
    let styles = vec![
        (load("starry_night.jpg", size * 9 / 10), 3.0),
        (load("the_scream.jpg", size * 11 / 10), 1.0),
    ];
    (arch, weights, loss, content, styles)
}

fn session(parts: &Parts) -> CpuSession {
    masked_session(parts, None)
}

fn masked_session(parts: &Parts, masks: Option<&[Vec<f32>]>) -> CpuSession {
    let (arch, weights, loss, content, styles) = parts;
    CpuSession::new(&Setup {
        style_masks: masks,
        ..Setup::plain((arch, weights, loss), content, styles)
    })
    .unwrap()
}

#[test]
fn cpu_losses_and_gradient_match_reference() {
    let parts = setup_parts();
    // Without a loss on block1_conv2, the convolution before the first pool, its output is
    // held only during the forward pass (in a gradient buffer), the backward reading the
    // pool's routes.
    let mut transient = setup_parts();
    transient.2.style_layers = vec![0, 2];
    // Without a loss on block1_conv1, the backward of block1_conv2 needs it only as a ReLU
    // mask: it is kept as signs, one bit an element.
    let mut signs = setup_parts();
    signs.2.style_layers = vec![1, 2];
    // --seamless: circular padding in every convolution, the TV across the wrap.
    let mut seamless = setup_parts();
    seamless.2.seamless = true;
    // Layer weights (crowsonkb's ratios), and the W2 loss with and without them.
    let mut weighted = setup_parts();
    weighted.2.style_layer_weights = vec![16.0, 4.0, 1.0];
    let mut w2 = setup_parts();
    w2.2.style_loss = StyleLossKind::W2;
    let mut w2_weighted = setup_parts();
    w2_weighted.2.style_loss = StyleLossKind::W2;
    w2_weighted.2.style_layer_weights = vec![1.0, 3.0, 0.5];
    // W2 through block2_conv2 of a 20 px picture: 70 positions for 128 channels, Σ singular
    // but for ε.
    let mut w2_deep = setup_parts();
    w2_deep.2.style_loss = StyleLossKind::W2;
    w2_deep.2.style_layers = vec![0, 3];
    let all = [
        parts,
        transient,
        signs,
        seamless,
        weighted,
        w2,
        w2_weighted,
        w2_deep,
    ];
    for parts in all {
        losses_and_gradient_match_reference(&parts, None);
    }
}

/// Two styles under soft masks (a ramp, and its complement with a band of zeros): the guided
/// Gram matrices' losses and gradient against the f64 reference's.
#[test]
fn cpu_masked_losses_and_gradient_match_reference() {
    let parts = setup_parts();
    let (h, w) = (parts.3.h, parts.3.w);
    let ramp: Vec<f32> = (0..h * w)
        .map(|p| ((p % w) as f32 / (w - 1) as f32).sqrt())
        .collect();
    let rest = (0..h * w)
        .map(|p| if p / w < 3 { 0.0 } else { 1.0 - ramp[p] })
        .collect();
    losses_and_gradient_match_reference(&parts, Some(&[ramp, rest]));
}

fn losses_and_gradient_match_reference(parts: &Parts, masks: Option<&[Vec<f32>]>) {
    let (arch, weights, loss, content, styles) = parts;
    let mut s = masked_session(parts, masks);
    // Evaluate an image away from the content (else the content term is zero).
    let mut r = rng(33);
    let x: Vec<f32> = content
        .data
        .iter()
        .map(|v| (v + r.random_range(-0.2f32..0.2)).clamp(0.0, 1.0))
        .collect();
    use rand::Rng;
    let cw = common::reference_weights(arch, weights, loss.deepest());
    let affine = weights.convention.affine();
    let stages = arch.stages(loss.deepest(), content.h, content.w, Pooling::Max);
    let model = model_with(&stages, &cw, affine, loss);
    let mut targets = model.targets(&to_f64(&content.data));
    let per_style: Vec<_> = styles
        .iter()
        .map(|(img, wt)| {
            let st = arch.stages(loss.deepest(), img.h, img.w, Pooling::Max);
            let m = model_with(&st, &cw, affine, loss);
            (m.grams_per_position(&to_f64(&img.data)), *wt)
        })
        .collect();
    targets.style = model.blended_style(&per_style);
    if loss.style_loss == StyleLossKind::W2 {
        let moments: Vec<_> = styles
            .iter()
            .map(|(img, wt)| {
                let st = arch.stages(loss.deepest(), img.h, img.w, Pooling::Max);
                let m = model_with(&st, &cw, affine, loss);
                (m.moments_per_position(&to_f64(&img.data)), *wt)
            })
            .collect();
        targets.moments = reference::Model::blended_moments(&moments);
    }
    let total: f64 = per_style.iter().map(|s| s.1).sum();
    for (m, (grams, wt)) in masks.unwrap_or_default().iter().zip(per_style) {
        targets.masked.push(reference::MaskedStyle {
            mask: to_f64(m),
            weight: wt / total,
            grams,
        });
    }
    let want = model.losses(&to_f64(&x), &targets);
    let grad_want = model.gradient(&to_f64(&x), &targets);
    s.set_image(&x);
    let got = s.evaluate().unwrap();
    for (name, g, w) in [
        ("content", got.content, want.content),
        ("style", got.style, want.style),
        ("tv", got.tv, want.tv),
    ] {
        let e = ((g - w) / w).abs();
        println!(
            "cpu {name} loss (styles {:?} weighted {:?}, {:?}, masked {}, seamless {}): relative error {e:.2e}",
            loss.style_layers,
            loss.style_layer_weights,
            loss.style_loss,
            masks.is_some(),
            loss.seamless
        );
        assert!(e < TOL, "{name}: {g} vs {w}");
    }
    check("cpu image gradient", &s.gradient(), &grad_want, TOL);
}

#[test]
fn reruns_are_bit_identical_whatever_the_thread_count() {
    // Large enough that the convolutions run in several chunks of positions.
    let parts = setup_parts_at(72);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut s = session(&parts);
            let losses: Vec<u64> = (0..5)
                .map(|_| s.step(true).unwrap().unwrap().total.to_bits())
                .collect();
            let image: Vec<u32> = s
                .image()
                .unwrap()
                .data
                .iter()
                .map(|v| v.to_bits())
                .collect();
            (losses, image)
        })
    };
    let first = run(2);
    assert!(
        f64::from_bits(first.0[4]) < f64::from_bits(first.0[0]),
        "the loss falls"
    );
    for threads in [2, 1, 3] {
        let again = run(threads);
        assert_eq!(first.0, again.0, "losses with {threads} threads");
        assert!(first.1 == again.1, "image with {threads} threads");
    }
}

fn run_cli(
    engine: &str, out: &std::path::Path, report: &std::path::Path, extra: &[&str],
) -> serde_json::Value {
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(["stylize", "--content", &s(&common::image("tubingen.jpg"))])
        .args(["--style", &s(&common::image("starry_night.jpg"))])
        .args([
            "--weights",
            &s(&common::real_weights()),
            "--output",
            &s(out),
            "--report",
            &s(report),
        ])
        .args([
            "--content-layers",
            "block3_conv2",
            "--style-layers",
            "block1_conv1,block2_conv1,block3_conv1",
        ])
        .args(["--style-weight", "1e3", "--engine", engine])
        .args(extra)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("engine:") || engine == "gpu",
        "the run says which engine: {err}"
    );
    serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
}

#[test]
fn the_two_engines_agree_over_a_20_step_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--size", "32", "--steps", "20", "--log-every", "5"];
    let cpu = run_cli(
        "cpu",
        &dir.path().join("c.png"),
        &dir.path().join("c.json"),
        &args,
    );
    let gpu = run_cli(
        "gpu",
        &dir.path().join("g.png"),
        &dir.path().join("g.json"),
        &args,
    );
    assert_eq!(cpu["engine"], "cpu");
    assert_eq!(gpu["engine"], "gpu");
    let (cs, gs) = (
        cpu["steps"].as_array().unwrap(),
        gpu["steps"].as_array().unwrap(),
    );
    assert_eq!(cs.len(), 5, "steps 0, 5, 10, 15 and the final 20");
    assert_eq!(cs.len(), gs.len());
    for (c, g) in cs.iter().zip(gs) {
        for term in ["content", "style", "tv", "total"] {
            let (a, b) = (c[term].as_f64().unwrap(), g[term].as_f64().unwrap());
            let e = if b == 0.0 {
                a.abs()
            } else {
                ((a - b) / b).abs()
            };
            println!(
                "step {} {term}: cpu {a:.6e} gpu {b:.6e} ({e:.1e})",
                c["step"]
            );
            assert!(e <= 1e-3, "step {} {term}: cpu {a} vs gpu {b}", c["step"]);
        }
    }
    let total = |s: &serde_json::Value| s["total"].as_f64().unwrap();
    assert!(
        total(&cs[4]) < total(&cs[0]),
        "the loss falls on the CPU engine"
    );
}

#[test]
fn bench_on_the_cpu_engine_prints_the_per_layer_table_step_time_and_peak_memory() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(["bench", "--engine", "cpu", "--size", "24", "--steps", "2"])
        .args([
            "--content-layers",
            "block2_conv1",
            "--style-layers",
            "block1_conv1",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("CPU engine"), "{out}");
    // The per-layer table: every conv of the step both ways, with shapes, times and flops.
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // The figures after the name and shape: ms, GFLOP, GFLOP/s, ...
    let row = |name: &str, shape: &str| {
        let n = 1 + shape.split(' ').count();
        rows.iter()
            .find(|r| r.len() > n + 1 && r[0] == name && r[1..n].join(" ") == shape)
            .unwrap_or_else(|| panic!("no {name} {shape} row: {out}"))[n..]
            .to_vec()
    };
    // Each convolution's scheme after its shape: direct where a side has 3 channels,
    // Winograd F(4x4, 3x3) elsewhere (winograd::choose).
    for (name, shape) in [
        ("conv_forward", "3->64 24x24 direct"),
        ("conv_forward", "64->64 24x24 winograd4"),
        ("conv_forward", "64->128 12x12 winograd4"),
        ("conv_backward_input", "128->64 12x12 winograd4"),
        ("conv_backward_input_masked", "64->64 24x24 winograd4"),
        ("conv_backward_input", "64->3 24x24 direct"),
        ("pool_backward", "64x24x24"),
    ] {
        let r = row(name, shape);
        let (ms, gflop): (f64, f64) = (r[0].parse().unwrap(), r[1].parse().unwrap());
        assert!(ms >= 0.0 && ms.is_finite(), "{r:?}");
        assert!(gflop > 0.0 || name.starts_with("pool"), "{r:?}");
    }
    assert!(out.contains("gram ") && out.contains("style_grad") && out.contains("content_grad"));
    let ms: f64 = out
        .split("full step (2 timed steps): ")
        .nth(1)
        .and_then(|r| r.split(" ms/step").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no step time: {out}"));
    assert!(ms > 0.0 && ms.is_finite());
    assert!(
        cfg!(not(target_os = "linux")) || out.contains("peak memory: "),
        "{out}"
    );
}

/// Random features (n x m) and a style's moments from other random features (both post-ReLU
/// like: some zeros).
fn w2_problem(n: usize, m: usize, seed: u64) -> (Vec<f64>, reference::Moments) {
    use rand::Rng;
    let mut r = rng(seed);
    let mut feats = |len: usize| -> Vec<f64> {
        (0..len)
            .map(|_| r.random_range(-0.5f64..2.0).max(0.0))
            .collect()
    };
    let f = feats(n * m);
    let ms = m + 3;
    let s = feats(n * ms);
    let mean = (0..n).map(|c| s[c * ms..(c + 1) * ms].iter().sum::<f64>() / ms as f64);
    let second = reference::gram(&s, n, ms)
        .into_iter()
        .map(|v| v / ms as f64);
    (f, (mean.collect(), second.collect()))
}

/// The reference W2 term's gradient against its finite differences, with more positions than
/// channels and with fewer (Σ singular but for ε).
#[test]
fn w2_reference_gradient_matches_finite_differences() {
    for (n, m) in [(5, 30), (8, 3)] {
        let (f, target) = w2_problem(n, m, 5);
        let grad = reference::w2_grad(&f, n, m, &target);
        let scale = grad.iter().fold(0.0f64, |a, g| a.max(g.abs()));
        let mut worst = 0.0f64;
        for i in 0..n * m {
            let eps = 1e-6;
            let (mut fp, mut fm) = (f.clone(), f.clone());
            fp[i] += eps;
            fm[i] -= eps;
            let fd = (reference::w2_loss(&fp, n, m, &target)
                - reference::w2_loss(&fm, n, m, &target))
                / (2.0 * eps);
            worst = worst.max((fd - grad[i]).abs() / scale);
        }
        println!("W2 {n} channels x {m} positions: finite differences vs gradient, max relative error {worst:.2e}");
        assert!(worst < 1e-6, "{n}x{m}: {worst:e}");
    }
}

/// The host's W2 (eigendecompositions, `model::wasserstein`) against the reference's
/// (Jacobi rotations): the loss, and the gradient it gives the engines as
/// (2/M)(D F + b 1ᵀ).
#[test]
fn w2_host_matches_the_reference() {
    use impasto::model::wasserstein::W2Target;
    for (n, m) in [(5, 30), (8, 3), (64, 40)] {
        let (f, (mean_s, second_s)) = w2_problem(n, m, 6);
        let target = W2Target::new(&mean_s, &second_s);
        let mean: Vec<f64> = (0..n)
            .map(|c| f[c * m..(c + 1) * m].iter().sum::<f64>() / m as f64)
            .collect();
        let second: Vec<f64> = reference::gram(&f, n, m)
            .into_iter()
            .map(|v| v / m as f64)
            .collect();
        let got = target.evaluate(&mean, &second);
        let moments = (mean_s, second_s);
        let want = reference::w2_loss(&f, n, m, &moments);
        let e = ((got.loss - want) / want).abs();
        let want_grad = reference::w2_grad(&f, n, m, &moments);
        let grad: Vec<f64> = (0..n * m)
            .map(|i| {
                let (c, p) = (i / m, i % m);
                let df: f64 = (0..n).map(|k| got.d_second[c * n + k] * f[k * m + p]).sum();
                (2.0 * df + got.d_mean[c]) / m as f64
            })
            .collect();
        let scale = want_grad.iter().fold(0.0f64, |a, g| a.max(g.abs()));
        let ge =
            (grad.iter().zip(&want_grad)).fold(0.0f64, |a, (g, w)| a.max((g - w).abs() / scale));
        println!("W2 host vs reference, {n}x{m}: loss {e:.2e}, gradient {ge:.2e}");
        assert!(
            e < 1e-8 && ge < 1e-8,
            "{n}x{m}: loss {e:e}, gradient {ge:e}"
        );
    }
}

/// `impasto score`'s numbers (the CPU engine's maps in f32, then f64) against a direct f64
/// computation: the reference network's maps, the relative content distance, and the
/// reference's W2 term (Jacobi rotations) against the styles' blended moments. Whole, and in
/// tiles (a picture too large for one network): 8 px, smaller than the 16-px halo, and 16.
#[test]
fn score_matches_a_direct_f64_computation() {
    use impasto::job::{Engine, Job, Losses, Original, Stylizer};
    use rand::Rng;
    let arch = Arch::vgg19();
    let weights = Weights::load(&common::real_weights()).unwrap();
    let losses = Losses {
        content_layers: vec!["block2_conv2".into(), "block3_conv1".into()],
        style_layers: vec![
            "block1_conv1".into(),
            "block2_conv1".into(),
            "block3_conv1".into(),
        ],
        ..Losses::default()
    };
    let open = |n: &str| impasto::job::open_image(&common::image(n)).unwrap();
    let small = |o: Original, side: usize| {
        let img = o.at(side);
        let rgb = impasto::io::image::to_rgb(&img).into_raw();
        Original::from_pixels(img.w, img.h, rgb).unwrap()
    };
    let content = small(open("tubingen.jpg"), 40);
    let styles = vec![
        (small(open("starry_night.jpg"), 50), 3.0),
        (small(open("the_scream.jpg"), 30), 1.0),
    ];
    let mut job = Job::new(content, styles);
    job.settings.style_scale = 0.8;
    // A picture of another size than the content (it is resized to the picture's).
    let (h, w) = (27, 36);
    let mut r = rng(41);
    let picture = Image {
        h,
        w,
        data: (0..3 * h * w).map(|_| r.random::<f32>()).collect(),
    };
    let cw = common::reference_weights(&arch, &weights, 4);
    let stylizer = Stylizer::new(Engine::cpu(), weights, &losses).unwrap();

    let cfg = LossConfig {
        content_layers: vec![3, 4],
        style_layers: vec![0, 2, 4],
        ..LossConfig::default()
    };
    let affine = impasto::model::Convention::Caffe.affine();
    let maps = |img: &Image| {
        let stages = arch.stages(4, img.h, img.w, Pooling::Max);
        let f = model_with(&stages, &cw, affine, &cfg).forward(&to_f64(&img.data));
        let at = |l: usize| {
            let i = impasto::model::vgg19::conv_stage(&stages, l).unwrap();
            (f.acts[i].clone(), stages[i].cout)
        };
        (0..5).map(at).collect::<Vec<_>>()
    };
    let (x, c) = (maps(&picture), maps(&job.content.exactly(w, h)));
    let content: Vec<f64> = [3, 4]
        .iter()
        .map(|&l| {
            let d: f64 = x[l]
                .0
                .iter()
                .zip(&c[l].0)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            d / c[l].0.iter().map(|b| b * b).sum::<f64>()
        })
        .collect();
    let per_style: Vec<(Vec<reference::Moments>, f64)> = job
        .styles
        .iter()
        .map(|(s, wt)| {
            let m = maps(&s.at(29));
            let moments = [0, 2, 4].iter().map(|&l| {
                let (f, n) = &m[l];
                let pos = f.len() / n;
                let mean =
                    (0..*n).map(|i| f[i * pos..(i + 1) * pos].iter().sum::<f64>() / pos as f64);
                let g = reference::gram(f, *n, pos)
                    .into_iter()
                    .map(|v| v / pos as f64);
                (mean.collect(), g.collect())
            });
            (moments.collect(), *wt)
        })
        .collect();
    let blended = reference::Model::blended_moments(&per_style);
    let style: Vec<f64> = [0, 2, 4]
        .iter()
        .enumerate()
        .map(|(j, &l)| {
            let (f, n) = &x[l];
            reference::w2_loss(f, *n, f.len() / n, &blended[j])
        })
        .collect();
    for tile in [None, Some(8), Some(16)] {
        job.settings.tile = tile;
        let got = stylizer.score(&picture, &job).unwrap();
        println!("tiles: {tile:?}");
        check_score(&got, (&content, &style), (h, w));
    }
}

/// A score against the f64 content and style values of each layer.
fn check_score(
    got: &impasto::job::Score, (content, style): (&[f64], &[f64]), (h, w): (usize, usize),
) {
    let rel = |a: f64, b: f64| ((a - b) / b).abs();
    for (k, want) in content.iter().enumerate() {
        let e = rel(got.content_layers[k].value, *want);
        println!(
            "score: content {}: {:.6e} vs f64 {want:.6e}, relative error {e:.1e}",
            got.content_layers[k].layer, got.content_layers[k].value
        );
        assert!(e < 1e-4, "content layer {k}: {e:e}");
    }
    for (j, want) in style.iter().enumerate() {
        let e = rel(got.style_layers[j].value, *want);
        println!(
            "score: style {}: {:.6e} vs f64 {want:.6e}, relative error {e:.1e}",
            got.style_layers[j].layer, got.style_layers[j].value
        );
        assert!(e < 1e-4, "style layer {j}: {e:e}");
    }
    assert!(rel(got.content, content.iter().sum::<f64>() / 2.0) < 1e-4);
    assert!(rel(got.style, style.iter().sum::<f64>() / 3.0) < 1e-4);
    assert_eq!(got.size, [w, h]);
}
