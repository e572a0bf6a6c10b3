//! `impasto stylize` end to end: reports against the CPU reference, the loss falling,
//! style blending, colour preservation, and a clear error for each kind of bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{check, random, rng, to_f64};
use impasto::model::vgg19::Arch;
use impasto::model::Convention;
use impasto::model::LossConfig;
use impasto::model::Pooling;
use impasto::reference;
use impasto::weights::Weights;
use safetensors::tensor::TensorView;

fn impasto(args: &[&str]) -> Output {
    let xdg = std::env::temp_dir().join("impasto-test-xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    common::impasto_command(env!("CARGO_BIN_EXE_impasto"))
        .args(args)
        .env("XDG_RUNTIME_DIR", xdg)
        .env_remove("IMPASTO_WEIGHTS")
        // These tests exercise the WGSL (on the software driver here); tests/cpu.rs the CPU engine.
        .env("IMPASTO_ENGINE", "gpu")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small random RGB PNG.
fn write_png(path: &Path, w: u32, h: u32, seed: u64) {
    let mut r = rng(seed);
    let (v, _) = random(&mut r, (w * h * 3) as usize, 0.0, 255.0);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let i = ((y * w + x) * 3) as usize;
        image::Rgb([v[i] as u8, v[i + 1] as u8, v[i + 2] as u8])
    });
    img.save(path).unwrap();
}

/// Random weights of VGG19's real shapes for the first `layers` convolutions, Keras layout.
fn weights_bytes(layers: usize, tweak: impl Fn(&str, &mut Vec<usize>, &mut Vec<f32>)) -> Vec<u8> {
    let arch = Arch::vgg19();
    let mut r = rng(21);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for c in &arch.convs[..layers] {
        let (k, _) = random(&mut r, 9 * c.cin * c.cout, -0.05, 0.05);
        let (b, _) = random(&mut r, c.cout, -0.1, 0.1);
        tensors.push((format!("{}/kernel", c.name), vec![3, 3, c.cin, c.cout], k));
        tensors.push((format!("{}/bias", c.name), vec![c.cout], b));
    }
    for (name, shape, data) in tensors.iter_mut() {
        tweak(name, shape, data);
    }
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(n, shape, d)| (n, bytemuck::cast_slice(&d).to_vec(), shape))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b, shape)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// Files for a run that is valid except where a test breaks it.
struct Fixture {
    dir: tempfile::TempDir,
    content: PathBuf,
    style: PathBuf,
    weights: PathBuf,
    output: PathBuf,
}

const PREVIOUS: &[u8] = b"an earlier result that must survive a failed run";

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content.png");
        let style = dir.path().join("style.png");
        let weights = dir.path().join("w.safetensors");
        write_png(&content, 20, 14, 1);
        write_png(&style, 17, 19, 2);
        std::fs::write(&weights, weights_bytes(3, |_, _, _| {})).unwrap();
        let output = dir.path().join("out.png");
        std::fs::write(&output, PREVIOUS).unwrap();
        Fixture {
            dir,
            content,
            style,
            weights,
            output,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A valid short run; `overrides` are (flag, value) pairs that replace or add flags.
    fn run(&self, overrides: &[&str]) -> Output {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("--content", s(&self.content)),
            ("--style", s(&self.style)),
            ("--output", s(&self.output)),
            ("--weights", s(&self.weights)),
            ("--size", "16"),
            ("--content-layers", "block2_conv1"),
            ("--style-layers", "block1_conv1,block2_conv1"),
            ("--steps", "2"),
        ];
        for kv in overrides.chunks(2) {
            match pairs.iter_mut().find(|p| p.0 == kv[0]) {
                Some(p) => p.1 = kv[1],
                None => pairs.push((kv[0], kv[1])),
            }
        }
        let mut args = vec!["stylize"];
        for (k, v) in pairs {
            args.push(k);
            args.push(v);
        }
        impasto(&args)
    }

    /// The run failed cleanly: exit 1 or 2, a message naming `what`, the old output untouched,
    /// and no temporary files left behind.
    fn assert_refused(&self, o: &Output, what: &str) {
        let err = stderr(o);
        let code = o.status.code();
        assert!(
            matches!(code, Some(1) | Some(2)),
            "exit {code:?}, stderr: {err}"
        );
        assert!(!err.contains("panicked"), "panic: {err}");
        assert!(err.contains(what), "message should name {what:?}: {err}");
        assert_eq!(
            std::fs::read(&self.output).unwrap(),
            PREVIOUS,
            "the earlier output was clobbered"
        );
        let stray: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(stray.is_empty(), "temporary files left: {stray:?}");
    }
}

#[test]
fn valid_fixture_run_succeeds() {
    // The baseline the refusals below differ from: it must work.
    let f = Fixture::new();
    let o = f.run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&f.output).unwrap();
    assert_eq!((img.width(), img.height()), (16, 11));
}

#[test]
fn refuses_missing_image() {
    let f = Fixture::new();
    let missing = f.path("nope.png");
    f.assert_refused(&f.run(&["--content", s(&missing)]), "nope.png");
}

#[test]
fn refuses_empty_image() {
    let f = Fixture::new();
    let p = f.path("empty.png");
    std::fs::write(&p, b"").unwrap();
    f.assert_refused(&f.run(&["--style", s(&p)]), "empty.png");
}

#[test]
fn refuses_non_image() {
    let f = Fixture::new();
    let p = f.path("notes.png");
    std::fs::write(&p, b"this is plain text, not a picture").unwrap();
    f.assert_refused(&f.run(&["--content", s(&p)]), "notes.png");
}

#[test]
fn refuses_truncated_image() {
    let f = Fixture::new();
    let p = f.path("cut.png");
    write_png(&p, 64, 64, 3);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    f.assert_refused(&f.run(&["--content", s(&p)]), "cut.png");
}

#[test]
fn refuses_a_jpeg_cut_short() {
    // The decoder would fill the missing part in and the run would succeed.
    let f = Fixture::new();
    let p = f.path("cut.jpg");
    let bytes = std::fs::read(common::image("tubingen.jpg")).unwrap();
    std::fs::write(&p, &bytes[..20000]).unwrap();
    let o = f.run(&["--content", s(&p)]);
    f.assert_refused(&o, "cut.jpg");
    assert!(
        stderr(&o).contains("truncated or corrupt JPEG"),
        "{}",
        stderr(&o)
    );
    // The whole file is accepted.
    std::fs::write(&p, &bytes).unwrap();
    assert!(f.run(&["--content", s(&p)]).status.success());
}

#[test]
fn a_layer_deeper_than_the_weights_names_the_layer_asked_for() {
    let f = Fixture::new();
    // The fixture's weights hold block1_conv1..block2_conv1.
    let o = f.run(&["--content-layers", "block3_conv2"]);
    f.assert_refused(
        &o,
        "--content-layers block3_conv2 needs every layer up to it",
    );
    assert!(
        stderr(&o).contains("lacks layer block2_conv2"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn refuses_enormous_declared_dimensions_before_decoding() {
    let f = Fixture::new();
    let p = f.path("huge.png");
    // A PNG signature and an IHDR chunk declaring 100000 x 100000 pixels, and nothing else.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    // An empty IDAT and IEND, so a reader reaches the point where it would allocate.
    for chunk in [&b"IDAT"[..], &b"IEND"[..]] {
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(chunk);
        png.extend_from_slice(&crc32fast::hash(chunk).to_be_bytes());
    }
    std::fs::write(&p, png).unwrap();
    let o = f.run(&["--content", s(&p)]);
    f.assert_refused(&o, "huge.png");
    assert!(stderr(&o).contains("100000x100000"), "{}", stderr(&o));
}

#[test]
fn refuses_truncated_weights() {
    let f = Fixture::new();
    let bytes = std::fs::read(&f.weights).unwrap();
    std::fs::write(&f.weights, &bytes[..bytes.len() - 1000]).unwrap();
    f.assert_refused(&f.run(&[]), "w.safetensors");
}

#[test]
fn refuses_malformed_weights() {
    let f = Fixture::new();
    std::fs::write(
        &f.weights,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    )
    .unwrap();
    f.assert_refused(&f.run(&[]), "w.safetensors");
}

#[test]
fn refuses_weights_of_wrong_shape() {
    let f = Fixture::new();
    let bytes = weights_bytes(3, |name, shape, data| {
        if name == "block1_conv2/kernel" {
            shape[3] = 32;
            data.truncate(9 * 64 * 32);
        }
    });
    std::fs::write(&f.weights, bytes).unwrap();
    let o = f.run(&[]);
    f.assert_refused(&o, "block1_conv2");
}

#[test]
fn refuses_non_finite_weights() {
    let f = Fixture::new();
    let bytes = weights_bytes(3, |name, _, data| {
        if name == "block2_conv1/bias" {
            data[7] = f32::NAN;
        }
    });
    std::fs::write(&f.weights, bytes).unwrap();
    let o = f.run(&[]);
    f.assert_refused(&o, "block2_conv1/bias");
}

#[test]
fn refuses_weights_lacking_a_requested_layer() {
    let f = Fixture::new();
    let o = f.run(&["--content-layers", "block3_conv2"]);
    f.assert_refused(&o, "lacks layer block2_conv2");
}

#[test]
fn refuses_unknown_layer_name() {
    let f = Fixture::new();
    let o = f.run(&["--style-layers", "block1_conv1,block9_conv9"]);
    f.assert_refused(&o, "block9_conv9");
    assert!(stderr(&o).contains("--style-layers"));
}

#[test]
fn refuses_negative_steps() {
    let f = Fixture::new();
    f.assert_refused(&f.run(&["--steps", "-3"]), "--steps");
}

#[test]
fn refuses_non_finite_learning_rate() {
    let f = Fixture::new();
    f.assert_refused(&f.run(&["--lr", "nan"]), "--lr");
    f.assert_refused(&f.run(&["--lr", "inf"]), "--lr");
    f.assert_refused(&f.run(&["--lr", "0"]), "--lr");
}

#[test]
fn refuses_a_bad_memory_cap() {
    let f = Fixture::new();
    for bad in ["6X", "0", "lots", "1.5Q"] {
        let o = f.run(&["--max-memory", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        f.assert_refused(&o, "--max-memory");
    }
    // A cap below what the run needs: refused before any work, exit 1, the output untouched.
    let o = f.run(&["--max-memory", "1K"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    f.assert_refused(&o, "the largest --size that fits is none");
}

#[test]
fn refuses_non_positive_loss_weight() {
    let f = Fixture::new();
    f.assert_refused(&f.run(&["--style-weight", "-1"]), "--style-weight");
    f.assert_refused(&f.run(&["--style-weight", "0"]), "--style-weight");
    // (A content weight of 0 is allowed: a texture from the style alone.)
    f.assert_refused(&f.run(&["--content-weight", "-1"]), "--content-weight");
    f.assert_refused(&f.run(&["--tv-weight", "-0.5"]), "--tv-weight");
}

#[test]
fn refuses_size_zero() {
    let f = Fixture::new();
    f.assert_refused(&f.run(&["--size", "0"]), "--size");
}

#[test]
fn refuses_output_in_missing_directory() {
    let f = Fixture::new();
    let out = f.path("no/such/dir/out.png");
    let o = f.run(&["--output", s(&out)]);
    f.assert_refused(&o, "no/such/dir");
    assert!(!out.exists());
}

#[test]
fn refuses_a_loss_that_is_not_finite_and_writes_nothing() {
    let f = Fixture::new();
    // Weights this large overflow f32 in the Gram matrices: the very first loss is not finite.
    let bytes = weights_bytes(3, |name, _, data| {
        if name.ends_with("kernel") {
            data.iter_mut().for_each(|v| *v *= 1e18);
        }
    });
    std::fs::write(&f.weights, bytes).unwrap();
    let o = f.run(&[]);
    f.assert_refused(&o, "non-finite");
}

fn shallow_args<'a>(out: &'a Path, report: &'a Path, size: &'a str, steps: &'a str) -> Vec<String> {
    [
        "stylize",
        "--content",
        s(&common::image("tubingen.jpg")),
        "--style",
        s(&common::image("starry_night.jpg")),
        "--output",
        s(out),
        "--weights",
        s(&common::real_weights()),
        "--size",
        size,
        "--content-layers",
        "block3_conv2",
        "--style-layers",
        "block1_conv1,block2_conv1,block3_conv1",
        "--steps",
        steps,
        "--log-every",
        "10",
        "--report",
        s(report),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read_report(report: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
}

fn report_steps(report: &Path) -> Vec<serde_json::Value> {
    read_report(report)["steps"].as_array().unwrap().clone()
}

/// The CPU reference's losses for `content` x `styles` (blend weights) with the real weights.
fn reference_losses(
    size: usize, styles: &[(&str, f64)], cfg: &LossConfig,
) -> impasto::model::LossValues {
    let w = Weights::load(&common::real_weights()).unwrap();
    assert_eq!(w.convention, Convention::Caffe);
    let arch = Arch::vgg19();
    let cw = common::reference_weights(&arch, &w, cfg.deepest());
    let model_for = |h: usize, wd: usize| arch.stages(cfg.deepest(), h, wd, Pooling::Max);
    let content = impasto::io::image::load(&common::image("tubingen.jpg"), Some(size)).unwrap();
    let stages = model_for(content.h, content.w);
    let model = reference::Model {
        stages: &stages,
        weights: &cw,
        affine: w.convention.affine(),
        loss: cfg,
    };
    let x = to_f64(&content.data);
    let mut targets = model.targets(&x);
    let per_style: Vec<_> = styles
        .iter()
        .map(|(name, b)| {
            let img = impasto::io::image::load(&common::image(name), Some(size)).unwrap();
            let st = model_for(img.h, img.w);
            let m = reference::Model {
                stages: &st,
                weights: &cw,
                affine: w.convention.affine(),
                loss: cfg,
            };
            (m.grams_per_position(&to_f64(&img.data)), *b)
        })
        .collect();
    targets.style = model.blended_style(&per_style);
    model.losses(&x, &targets)
}

fn shallow_config() -> LossConfig {
    let arch = Arch::vgg19();
    LossConfig {
        content_layers: vec![arch.layer_index("block3_conv2").unwrap()],
        style_layers: ["block1_conv1", "block2_conv1", "block3_conv1"]
            .iter()
            .map(|n| arch.layer_index(n).unwrap())
            .collect(),
        content_weight: 1.0,
        style_weight: 1e5,
        tv_weight: impasto::model::loss::DEFAULT_TV_WEIGHT,
        seamless: false,
        ..LossConfig::default()
    }
}

#[test]
fn report_matches_cpu_reference_and_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("out.png"), dir.path().join("report.json"));
    let o = impasto(
        &shallow_args(&out, &report, "64", "50")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = report_steps(&report);
    let ids: Vec<u64> = steps.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(ids, [0, 10, 20, 30, 40, 50]);
    let want = reference_losses(64, &[("starry_night.jpg", 1.0)], &shallow_config());
    let first = &steps[0];
    for (k, w) in [
        ("content", want.content),
        ("style", want.style),
        ("tv", want.tv),
        ("total", want.total),
    ] {
        let got = first[k].as_f64().unwrap();
        check(&format!("step 0 {k}"), &[got as f32], &[w], 1e-4);
    }
    let totals: Vec<f64> = steps.iter().map(|e| e["total"].as_f64().unwrap()).collect();
    println!("total loss by logged step: {totals:?}");
    assert!(totals[5] < 0.5 * totals[0], "loss did not fall: {totals:?}");
    assert!(
        totals.windows(2).all(|w| w[1] < w[0]),
        "loss rose: {totals:?}"
    );
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
    // Vulkan gives an allocator report: the peak holds at least the weights of the layers run
    // (block1_conv1 .. block3_conv2: 1.14 million f32s, in two layouts, 9.2 MB).
    let v = read_report(&report);
    if v["backend"] == "Vulkan" {
        let peak = v["peak_gpu_memory_bytes"].as_u64().unwrap();
        assert!(peak > 9_000_000, "peak GPU memory {peak} B");
    }
}

#[test]
fn f16_storage_run_matches_the_reference_and_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("out.png"), dir.path().join("report.json"));
    let mut args = shallow_args(&out, &report, "64", "30");
    args.extend(["--storage".to_string(), "f16".to_string()]);
    let o = impasto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let v = read_report(&report);
    assert_eq!(v["settings"]["storage"], "f16");
    // The gradients are f16 too, calibrated at setup: no step overflowed.
    assert_eq!(v["scales"][0]["skipped_steps"], 0);
    let steps = report_steps(&report);
    // Feature maps keep 11 significant bits; Grams and losses still sum in f32.
    let want = reference_losses(64, &[("starry_night.jpg", 1.0)], &shallow_config());
    for (k, w) in [("style", want.style), ("total", want.total)] {
        let got = steps[0][k].as_f64().unwrap();
        check(&format!("f16 step 0 {k}"), &[got as f32], &[w], 2e-3);
    }
    // The image starts as the content image: no content loss, in f16 as in f32.
    assert_eq!(steps[0]["content"].as_f64().unwrap(), 0.0);
    let totals: Vec<f64> = steps.iter().map(|e| e["total"].as_f64().unwrap()).collect();
    println!("f16 total loss by logged step: {totals:?}");
    assert!(totals[3] < 0.6 * totals[0], "loss did not fall: {totals:?}");
}

/// `--precision mixed`: where the adapter offers cooperative matrices (lavapipe of Mesa
/// 25.2+: scripts/test runs this on Debian sid's), the run takes them after the check
/// against f32, and its losses match the reference as 16-bit storage does; where it does not,
/// the run computes in f32 and the report says why.
#[test]
fn mixed_precision_run_matches_the_reference_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("out.png"), dir.path().join("report.json"));
    let mut args = shallow_args(&out, &report, "64", "30");
    args.extend(["--precision", "mixed", "--engine", "gpu"].map(String::from));
    let o = impasto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let v = read_report(&report);
    let variants = &v["tiling"];
    let note = variants["precision_note"].as_str().unwrap();
    println!("{variants}");
    assert!(stderr(&o).contains(note), "{}", stderr(&o));
    match variants["precision"].as_str().unwrap() {
        "mixed" => {
            assert!(
                note.starts_with("mixed precision checked against f32: conv"),
                "{note}"
            );
            assert!(variants["conv"].as_str().unwrap().starts_with("coop"));
            assert_eq!(v["scales"][0]["skipped_steps"], 0);
        }
        // (Refused, or, where the tuner timed them, slower than the f32 variants.)
        _ => assert!(
            (note.contains("refused") && note.contains("cooperative"))
                || note.contains("tuned for"),
            "{note}"
        ),
    }
    let steps = report_steps(&report);
    let want = reference_losses(64, &[("starry_night.jpg", 1.0)], &shallow_config());
    for (k, w) in [("style", want.style), ("total", want.total)] {
        let got = steps[0][k].as_f64().unwrap();
        check(&format!("mixed step 0 {k}"), &[got as f32], &[w], 2e-3);
    }
    let totals: Vec<f64> = steps.iter().map(|e| e["total"].as_f64().unwrap()).collect();
    assert!(totals[3] < 0.6 * totals[0], "loss did not fall: {totals:?}");
    // A variant of the other precision than asked is refused, naming both flags.
    let mut args = shallow_args(&out, &report, "64", "30");
    args.extend(["--tiling", "coop16"].map(String::from));
    let o = impasto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--precision mixed"), "{}", stderr(&o));
}

#[test]
fn two_style_blend_uses_the_blended_gram_target() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("out.png"), dir.path().join("report.json"));
    let mut args = shallow_args(&out, &report, "32", "0");
    args.extend(
        [
            "--style",
            s(&common::image("the_scream.jpg")),
            "--style-blend",
            "3,1",
        ]
        .map(String::from),
    );
    let o = impasto(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = report_steps(&report);
    assert_eq!(steps.len(), 1, "--steps 0 reports step 0 only");
    let cfg = shallow_config();
    let want = reference_losses(
        32,
        &[("starry_night.jpg", 3.0), ("the_scream.jpg", 1.0)],
        &cfg,
    );
    check(
        "blended style loss",
        &[steps[0]["style"].as_f64().unwrap() as f32],
        &[want.style],
        1e-4,
    );
    // Either style alone gives a different loss, so the check above can tell them apart.
    let alone = reference_losses(32, &[("starry_night.jpg", 1.0)], &cfg);
    assert!((alone.style - want.style).abs() > 1e-2 * want.style);
    // --steps 0 writes the initial image: the content itself.
    let content = impasto::io::image::load(&common::image("tubingen.jpg"), Some(32)).unwrap();
    let written = impasto::io::image::load(&out, None).unwrap();
    assert_eq!(
        impasto::io::image::to_rgb(&content),
        impasto::io::image::to_rgb(&written)
    );
}

/// Mean |I| and |Q| difference (YIQ chroma) between two images.
fn chroma_distance(a: &impasto::model::Image, b: &impasto::model::Image) -> f64 {
    let hw = a.h * a.w;
    let iq = |img: &impasto::model::Image, p: usize| {
        let (r, g, bl) = (
            img.data[p] as f64,
            img.data[hw + p] as f64,
            img.data[2 * hw + p] as f64,
        );
        (
            0.5957 * r - 0.2745 * g - 0.3213 * bl,
            0.2115 * r - 0.5226 * g + 0.3111 * bl,
        )
    };
    (0..hw)
        .map(|p| {
            let (i1, q1) = iq(a, p);
            let (i2, q2) = iq(b, p);
            (i1 - i2).abs() + (q1 - q2).abs()
        })
        .sum::<f64>()
        / hw as f64
}

#[test]
fn preserve_colors_keeps_the_content_chroma() {
    let dir = tempfile::tempdir().unwrap();
    let content = impasto::io::image::load(&common::image("tubingen.jpg"), Some(32)).unwrap();
    let mut dist = Vec::new();
    for preserve in [false, true] {
        let (out, report) = (
            dir.path().join(format!("{preserve}.png")),
            dir.path().join("r.json"),
        );
        let mut args = shallow_args(&out, &report, "32", "30");
        args.extend(["--lr", "0.05"].map(String::from));
        if preserve {
            args.push("--preserve-colors".into());
        }
        let o = impasto(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        dist.push(chroma_distance(
            &impasto::io::image::load(&out, None).unwrap(),
            &content,
        ));
    }
    println!(
        "chroma distance to content: plain {:.4}, --preserve-colors {:.4}",
        dist[0], dist[1]
    );
    assert!(dist[1] < 0.01, "preserved chroma drifted: {}", dist[1]);
    assert!(
        dist[0] > 3.0 * dist[1],
        "the plain run should change colours more"
    );
}

#[test]
fn save_every_writes_intermediate_images_beside_the_output() {
    let f = Fixture::new();
    let o = f.run(&["--steps", "4", "--save-every", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(f.path("out.step000002.png").exists());
    // The final image is the output itself, not another intermediate.
    assert!(!f.path("out.step000004.png").exists());
    assert_ne!(std::fs::read(&f.output).unwrap(), PREVIOUS);
}

#[test]
fn ctrl_c_writes_the_current_image_then_exits() {
    let f = Fixture::new();
    std::fs::remove_file(&f.output).unwrap();
    let report = f.path("r.json");
    let xdg = std::env::temp_dir().join("impasto-test-xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args([
            "stylize",
            "--content",
            s(&f.content),
            "--style",
            s(&f.style),
            "--output",
            s(&f.output),
            "--weights",
            s(&f.weights),
            "--size",
            "16",
            "--content-layers",
            "block2_conv1",
            "--style-layers",
            "block1_conv1",
            "--steps",
            "10000000",
            "--log-every",
            "1",
            "--report",
            s(&report),
        ])
        .env("XDG_RUNTIME_DIR", xdg)
        .env("IMPASTO_ENGINE", "gpu")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the loop runs.
    let (status, rest) = common::interrupt_after(&mut child, "step 3/");
    assert_eq!(status, Some(130), "{rest:?}");
    assert!(
        image::open(&f.output).is_ok(),
        "the current image was written"
    );
    let v = read_report(&report);
    assert_eq!(v["outcome"], "interrupted");
}

#[test]
fn refuses_a_size_too_small_for_the_layers() {
    let f = Fixture::new();
    // 1 px: block2_conv1 sits behind a 2x2 pooling, so its map would be empty.
    let o = f.run(&["--size", "1"]);
    f.assert_refused(&o, "too small for layer block2_conv1");
}

#[test]
fn bench_prints_a_row_per_kernel_with_its_rates() {
    let o = impasto(&[
        "bench",
        "--size",
        "24",
        "--content-layers",
        "block2_conv1",
        "--style-layers",
        "block1_conv1,block2_conv1",
        "--steps",
        "1",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let header = out.lines().position(|l| l.starts_with("kernel")).unwrap();
    assert!(out.lines().nth(header).unwrap().contains("GB/s"), "{out}");
    // kernel, [shape], ms, GFLOP, GFLOP/s, GB/s, share: the numbers are the last five fields.
    let rows: Vec<(&str, Vec<f64>)> = out
        .lines()
        .skip(header + 1)
        .take_while(|l| !l.starts_with("sum of kernels"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let nums = f[f.len() - 5..]
                .iter()
                .map(|v| v.trim_end_matches('%').parse::<f64>().unwrap())
                .collect();
            (f[0], nums)
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    for k in [
        "preprocess",
        "conv_forward",
        "pool_forward",
        "gram",
        "style_grad",
        "content_grad",
        "conv_backward_input",
        "pool_backward",
        "preprocess_backward",
        "adam_update",
    ] {
        assert!(names.contains(&k), "no {k} row:\n{out}");
    }
    // Three convolutions forward, three backward (block2_conv1 is the deepest layer).
    assert_eq!(names.iter().filter(|&&n| n == "conv_forward").count(), 3);
    assert_eq!(
        names
            .iter()
            .filter(|&&n| n.starts_with("conv_backward_input"))
            .count(),
        3
    );
    for (name, v) in &rows {
        let [ms, _gflop, gflops, gbs, _share] = v[..] else {
            unreachable!()
        };
        assert!(
            ms >= 0.0 && gbs.is_finite() && gflops.is_finite(),
            "{name}: {v:?}"
        );
        // The memory-bound kernels report their bandwidth, the matrix kernels their FLOPs.
        if [
            "pool_forward",
            "pool_backward",
            "content_grad",
            "adam_update",
        ]
        .contains(name)
        {
            assert!(gbs > 0.0, "{name} moves no bytes: {v:?}");
        }
        if name.starts_with("conv") || *name == "gram" || *name == "style_grad" {
            assert!(gflops > 0.0, "{name} does no FLOPs: {v:?}");
        }
    }
    assert!(out.contains("ms/step"), "{out}");
    assert!(
        out.contains("peak GPU memory: ") && out.contains(" MiB allocated"),
        "{out}"
    );
}

#[test]
fn bench_refuses_unknown_tiling() {
    let o = impasto(&["bench", "--size", "24", "--tiling", "regs7"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tiling"), "{}", stderr(&o));
}

/// On a headless machine (no display, XDG_RUNTIME_DIR unset) looking at the GPUs prints
/// nothing on stderr: only the backends the design names are probed (GL's EGL and Wayland
/// probing complained there).
#[test]
fn devices_on_a_headless_machine_leave_stderr_clean() {
    let out = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .env_remove("WGPU_BACKEND")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "stderr should be clean");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.starts_with("cpu: CPU engine"), "{listed}");
    assert!(!listed.contains("(Gl,"), "GL was probed: {listed}");
    // Each adapter says which tensor-core shapes WGSL reaches and what --precision mixed runs
    // there: Debian 12's lavapipe none (f32), Mesa 26's 8x8x8 (coop8).
    let coop: Vec<&str> = (listed.lines())
        .filter(|l| l.contains("tensor cores from WGSL (cooperative matrices): "))
        .collect();
    let adapters = (listed.lines())
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(coop.len(), adapters, "{listed}");
    for line in coop {
        match line.contains("): none") {
            true => assert!(
                line.ends_with("(--precision mixed computes in f32 here)"),
                "{line}"
            ),
            false => assert!(line.contains("(--precision mixed runs coop"), "{line}"),
        }
    }
}

#[test]
fn refuses_style_loss_settings_it_cannot_run() {
    let f = Fixture::new();
    // (These tests run the GPU engine: IMPASTO_ENGINE=gpu.)
    let mask = f.path("mask.png");
    write_png(&mask, 16, 11, 5);
    let masked = [
        "--style-loss",
        "w2",
        "--engine",
        "cpu",
        "--style-mask",
        s(&mask),
    ];
    f.assert_refused(&f.run(&masked), "--style-loss gram");
    let three = ["--style-layer-weights", "1,2,3"];
    f.assert_refused(
        &f.run(&three),
        "--style-layer-weights has 3 weights for 2 --style-layers",
    );
    f.assert_refused(
        &f.run(&["--style-layer-weights", "1,0"]),
        "--style-layer-weights",
    );
    f.assert_refused(&f.run(&["--style-loss", "wasserstein"]), "--style-loss");
    // The same flags that can run do.
    for ok in [
        &["--style-loss", "w2"][..],
        &["--style-loss", "w2", "--tile", "8"],
        &["--style-loss", "w2", "--engine", "cpu", "--tile", "8"],
        &["--style-layer-weights", "4,1"],
    ] {
        let o = f.run(ok);
        assert!(o.status.success(), "{ok:?}: {}", stderr(&o));
    }
}

#[test]
fn score_prints_a_pictures_distances_and_refuses_bad_input() {
    let f = Fixture::new();
    let report = f.path("report.json");
    let o = f.run(&["--report", s(&report)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // `impasto score PICTURE` against the fixture's content and `style`, with `layers`, then
    // `extra` flags.
    let run_with = |picture: &Path, style: &Path, layers: [&str; 2], extra: &[&str]| {
        let (p, c, st, w) = (s(picture), s(&f.content), s(style), s(&f.weights));
        let mut args = vec!["score", p, "--content", c, "--style", st, "--weights", w];
        args.extend(["--content-layers", layers[0], "--style-layers", layers[1]]);
        args.extend(extra);
        impasto(&args)
    };
    let run =
        |picture: &Path, style: &Path, layers: [&str; 2]| run_with(picture, style, layers, &[]);
    let shallow = ["block2_conv1", "block1_conv1,block2_conv1"];
    let score = |picture: &Path, style: &Path| {
        let o = run(picture, style, shallow);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let out = score(&f.output, &f.style);
    let layers: Vec<&str> = (out["style_layers"].as_array().unwrap().iter())
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["block1_conv1", "block2_conv1"]);
    assert_eq!(out["content_layers"][0]["layer"], "block2_conv1");
    let (content, style) = (
        out["content"].as_f64().unwrap(),
        out["style"].as_f64().unwrap(),
    );
    assert!(content > 0.0 && style > 0.0, "{out}");
    // The run's report ends with the score of its picture (before 8-bit rounding).
    let reported = &read_report(&report)["score"];
    for key in ["content", "style"] {
        let (a, b) = (reported[key].as_f64().unwrap(), out[key].as_f64().unwrap());
        assert!(((a - b) / b).abs() < 0.05, "{key}: report {a}, score {b}");
    }
    // The content image keeps its content exactly; the style image matches its own style.
    let itself = score(&f.content, &f.style);
    assert_eq!(itself["content"].as_f64().unwrap(), 0.0);
    let own_style = score(&f.style, &f.style)["style"].as_f64().unwrap();
    assert!(own_style.abs() < 1e-6 * style, "{own_style} vs {style}");
    // Bad input: a missing picture (exit 1, named), an unknown layer (exit 2, its flag).
    let missing = f.path("nope.png");
    let o = run(&missing, &f.style, ["block2_conv1", "block1_conv1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope.png"), "{}", stderr(&o));
    let o = run(&f.output, &f.style, ["block2_conv1", "block9_conv1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--style-layers"), "{}", stderr(&o));
    // In tiles (for print-size pictures): the same numbers; a tile off the pooling grid (2 px
    // with block2) is refused, exit 2, naming the flag.
    let o = run_with(&f.output, &f.style, shallow, &["--tile", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tiled: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["content", "style"] {
        let (a, b) = (tiled[key].as_f64().unwrap(), out[key].as_f64().unwrap());
        assert!(((a - b) / b).abs() < 1e-5, "{key}: tiled {a}, whole {b}");
    }
    let o = run_with(&f.output, &f.style, shallow, &["--tile", "7"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tile 7"), "{}", stderr(&o));
}
