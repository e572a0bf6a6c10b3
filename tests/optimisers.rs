//! The optimisers on both engines with the real weights: the moving average against an EMA
//! computed here from the iterates, Adam's state carried into a new session, and through the
//! CLI, coarse-to-fine runs, L-BFGS against Adam, 16-bit output and the colour profile.

use std::path::Path;
use std::process::Command;

use impasto::cpu::CpuSession;
use impasto::model::{AdamConfig, AdamState, Arch, EngineSession, Image, LossConfig};
use impasto::pipeline::session::{Session, Setup};
use impasto::reference;
use impasto::weights::Weights;

mod common;

struct Parts {
    arch: Arch,
    weights: Weights,
    loss: LossConfig,
    content: Image,
    styles: Vec<(Image, f64)>,
}

fn parts() -> Parts {
    let arch = Arch::vgg19();
    let loss = common::small_loss(&arch);
    let load = |n: &str, s| impasto::io::image::load(&common::image(n), Some(s)).unwrap();
    Parts {
        weights: Weights::load(&common::real_weights()).unwrap(),
        arch,
        loss,
        content: load("tubingen.jpg", 20),
        styles: vec![(load("starry_night.jpg", 18), 1.0)],
    }
}

fn setup(p: &Parts, average: f64) -> Setup<'_> {
    Setup {
        average,
        ..Setup::plain((&p.arch, &p.weights, &p.loss), &p.content, &p.styles)
    }
}

/// Runs `f` on a CPU session and on a GPU session of the same setup.
fn on_both_engines(p: &Parts, average: f64, f: impl Fn(&str, &mut dyn EngineSession)) {
    let mut cpu = CpuSession::new(&setup(p, average)).unwrap();
    f("cpu", &mut cpu);
    let c = common::ctx();
    let mut gpu = Session::new(&c.gpu, &c.kernels, &setup(p, average)).unwrap();
    f("gpu", &mut gpu);
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn the_moving_average_is_the_ema_of_the_iterates() {
    let p = parts();
    let decay = 0.8;
    on_both_engines(&p, decay, |engine, s| {
        // crowsonkb's EMA, in f64: value and accum start at 0 and 1, then every iterate
        // (the starting image first) is folded in; the average is value / (1 − accum).
        let mut value = vec![0.0f64; p.content.data.len()];
        let mut accum = 1.0;
        let mut fold = |x: &[f32]| {
            accum *= decay;
            value
                .iter_mut()
                .zip(x)
                .for_each(|(v, &x)| *v = decay * *v + (1.0 - decay) * x as f64);
        };
        fold(&p.content.data);
        for _ in 0..4 {
            s.step(false).unwrap();
            fold(&s.image().unwrap().data);
        }
        // Images set from outside (L-BFGS's iterates) fold too.
        let mut r = common::rng(4);
        for _ in 0..2 {
            let (x, _) = common::random(&mut r, p.content.data.len(), 0.0, 1.0);
            s.set_image(&x).unwrap();
            s.fold_average().unwrap();
            fold(&x);
        }
        let want: Vec<f64> = value.iter().map(|v| v / (1.0 - accum)).collect();
        let got = s.averaged_image().unwrap().expect("averaging is on");
        let err = max_diff(&got.data, &want);
        println!("{engine}: average off by {err:.2e}");
        assert!(err < 1e-5, "{engine}: {err}");
        // And it is not simply the last iterate.
        assert!(max_diff(&s.image().unwrap().data, &want) > 1e-2);
    });
}

#[test]
fn adams_state_carries_into_a_new_session() {
    let p = parts();
    on_both_engines(&p, 0.0, |engine, s| {
        // Three steps, then the state into a fresh session of the same problem.
        let n = p.content.data.len();
        let mut first = CpuSession::new(&setup(&p, 0.0)).unwrap();
        for _ in 0..3 {
            first.step(false).unwrap();
        }
        let state = first.adam_state().unwrap();
        assert_eq!(state.t, 3);
        assert!(state.m.iter().any(|&m| m != 0.0));
        s.set_adam_state(&state).unwrap();
        let read = s.adam_state().unwrap();
        assert_eq!((read.t, &read.m, &read.v), (3, &state.m, &state.v));

        // The next step is Adam's fourth from those moments (reference in f64)...
        let (_, g) = s.loss_and_gradient().unwrap();
        let x0 = s.image().unwrap().data;
        s.step(false).unwrap();
        let to64 = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let (mut x, mut m, mut v) = (to64(&x0), to64(&state.m), to64(&state.v));
        reference::adam_step(&mut x, &mut m, &mut v, &to64(&g), 4, &AdamConfig::default());
        let err = max_diff(&s.image().unwrap().data, &x);
        println!("{engine}: step from the carried state off by {err:.2e}");
        assert!(err < 1e-5, "{engine}: {err}");
        // ...which a reset state would not give.
        let (mut xr, mut mr, mut vr) = (to64(&x0), vec![0.0; n], vec![0.0; n]);
        reference::adam_step(
            &mut xr,
            &mut mr,
            &mut vr,
            &to64(&g),
            1,
            &AdamConfig::default(),
        );
        assert!(max_diff(&s.image().unwrap().data, &xr) > 1e-3);
        let after = s.adam_state().unwrap();
        assert_eq!(after.t, 4);
        let _: AdamState = after;
    });
}

fn stylize(engine: &str, dir: &Path, out: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let report = dir.join(format!("{out}.json"));
    let o = common::stylize_command(dir, engine)
        .args(["--content-layers", "block2_conv1", "--style-layers"])
        .args(["block1_conv1,block2_conv1", "--log-every", "1", "--output"])
        .arg(dir.join(out))
        .arg("--report")
        .arg(&report)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{extra:?}: {err}");
    let r = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (r, err)
}

/// The totals a report logged at `scale`.
fn totals(r: &serde_json::Value, scale: u64) -> Vec<f64> {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["scale"] == scale)
        .map(|e| e["total"].as_f64().unwrap())
        .collect()
}

#[test]
fn a_two_scale_run_reports_both_scales_with_the_loss_falling_in_each() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--size",
        "32",
        "--min-size",
        "20",
        "--initial-steps",
        "6",
        "--steps",
        "4",
    ];
    let (r, err) = stylize("cpu", dir.path(), "two.png", &args);
    let scales: Vec<(u64, u64, u64)> = r["scales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap();
            (n("size"), n("width"), n("steps"))
        })
        .collect();
    // 32 / √2 = 22.6: two scales, 23 and 32 px wide (the picture is landscape).
    assert_eq!(scales, [(23, 23, 6), (32, 32, 4)]);
    assert_eq!(r["steps_done"], 10);
    for (scale, (steps, width)) in [(6, 23), (4, 32)].into_iter().enumerate() {
        let t = totals(&r, scale as u64);
        // Every step logged, and one more evaluation at the end of the scale.
        assert_eq!(t.len(), steps + 1, "scale {scale}: {t:?}");
        assert!(
            t[steps] < 0.8 * t[0],
            "scale {scale}: the loss falls: {t:?}"
        );
        let entries = r["steps"].as_array().unwrap();
        assert!(entries
            .iter()
            .filter(|e| e["scale"] == scale as u64)
            .all(|e| e["width"] == width));
    }
    assert!(
        err.contains("scale 1/2 23x") && err.contains("scale 2/2 32x"),
        "{err}"
    );
    let out = image::open(dir.path().join("two.png")).unwrap();
    assert_eq!(out.width(), 32);
}

#[test]
fn lbfgs_gets_lower_than_adam_in_the_same_number_of_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--size", "48", "--steps", "40"];
    let last = |r: &serde_json::Value| *totals(r, 0).last().unwrap();
    let (adam, _) = stylize("cpu", dir.path(), "adam.png", &common);
    let lbfgs_args = [&common[..], &["--optimizer", "lbfgs"]].concat();
    let (lbfgs, _) = stylize("cpu", dir.path(), "lbfgs.png", &lbfgs_args);
    assert_eq!(lbfgs["steps_done"], 40);
    println!(
        "after 40 evaluations: adam {:.4e}, lbfgs {:.4e}",
        last(&adam),
        last(&lbfgs)
    );
    assert!(last(&lbfgs) < 0.8 * last(&adam));
}

#[test]
fn the_gpu_engine_runs_scales_averaging_and_lbfgs_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--size",
        "24",
        "--min-size",
        "16",
        "--steps",
        "3",
        "--average",
        "0.5",
        "--optimizer",
        "lbfgs",
        "--bit-depth",
        "16",
    ];
    let (r, _) = stylize("gpu", dir.path(), "gpu.png", &args);
    assert_eq!(r["engine"], "gpu");
    assert_eq!(r["scales"].as_array().unwrap().len(), 2);
    for scale in 0..2 {
        let t = totals(&r, scale);
        assert!(t.len() == 4 && t[3] < t[0], "scale {scale}: {t:?}");
    }
    let out = image::open(dir.path().join("gpu.png")).unwrap();
    assert!(matches!(out.color(), image::ColorType::Rgb16));
}

#[test]
fn the_contents_colour_profile_reaches_16_bit_png_and_tiff_outputs() {
    let dir = tempfile::tempdir().unwrap();
    // The content image re-encoded with a profile (any bytes do: it is carried, not read).
    let icc: Vec<u8> = (0..500u32).map(|i| (i * 13 % 256) as u8).collect();
    let content = dir.path().join("with-profile.png");
    let rgb = image::open(common::image("tubingen.jpg"))
        .unwrap()
        .to_rgb8();
    {
        use image::ImageEncoder;
        let f = std::fs::File::create(&content).unwrap();
        let mut e = image::codecs::png::PngEncoder::new(f);
        e.set_icc_profile(icc.clone()).unwrap();
        e.write_image(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    }
    for out in ["o.png", "o.tif", "o.jpg"] {
        let bits = if out.ends_with("jpg") { "8" } else { "16" };
        let path = dir.path().join(out);
        let o = Command::new(env!("CARGO_BIN_EXE_impasto"))
            .args(["stylize", "--engine", "cpu", "--content"])
            .arg(&content)
            .arg("--style")
            .arg(common::image("starry_night.jpg"))
            .arg("--weights")
            .arg(common::real_weights())
            .args([
                "--content-layers",
                "block1_conv2",
                "--style-layers",
                "block1_conv1",
            ])
            .args([
                "--size",
                "24",
                "--steps",
                "2",
                "--bit-depth",
                bits,
                "--output",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        use image::ImageDecoder;
        let d = image::ImageReader::open(&path)
            .unwrap()
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        assert_eq!(
            common::icc_profile(&path).as_deref(),
            Some(&icc[..]),
            "{out}"
        );
        let want = if bits == "16" {
            image::ColorType::Rgb16
        } else {
            image::ColorType::Rgb8
        };
        assert_eq!(d.color_type(), want, "{out}");
    }
    // A JPEG cannot hold 16 bits: refused before any work, naming the flag.
    let o = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(["stylize", "--engine", "cpu", "--content"])
        .arg(&content)
        .arg("--style")
        .arg(common::image("starry_night.jpg"))
        .args(["--bit-depth", "16", "--output"])
        .arg(dir.path().join("x.jpg"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bit-depth 16"));
}

#[test]
fn a_first_scale_too_small_for_the_layers_is_refused_naming_min_size() {
    let dir = tempfile::tempdir().unwrap();
    let o = common::stylize_command(dir.path(), "cpu")
        .args([
            "--content-layers",
            "block3_conv2",
            "--style-layers",
            "block1_conv1",
        ])
        .args([
            "--size",
            "32",
            "--min-size",
            "3",
            "--steps",
            "1",
            "--output",
        ])
        .arg(dir.path().join("o.png"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--min-size 3") && err.contains("block3_conv2"),
        "{err}"
    );
    assert!(!dir.path().join("o.png").exists());
}
