//! Style masks (a style per region) and size-independent style targets: the all-ones identity
//! on both engines and the reference, targets that do not depend on the style image's size,
//! `--style-mask` and `--regions` runs on both engines, and the refusals before any work.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ctx, to_f64};
use impasto::cpu::{CpuSession, Setup as CpuSetup};
use impasto::model::engine::Setup;
use impasto::model::{Arch, EngineSession, Image, LossConfig, Pooling};
use impasto::pipeline::session::Session;
use impasto::reference;
use impasto::weights::Weights;

fn load(name: &str, size: usize) -> Image {
    impasto::io::image::load(&common::image(name), Some(size)).unwrap()
}

/// The real weights' objective on block1-3, with a style weight that makes the style term
/// count in the total.
fn shallow() -> (Arch, Weights, LossConfig) {
    let arch = Arch::vgg19();
    let w = Weights::load(&common::real_weights()).unwrap();
    // Style at block1_conv1, block2_conv1 and block3_conv1.
    let loss = common::loss_at(
        vec![arch.layer_index("block2_conv1").unwrap()],
        vec![0, 2, 4],
    );
    (arch, w, loss)
}

fn setup<'a>(
    (arch, w, loss): &'a (Arch, Weights, LossConfig), content: &'a Image,
    styles: &'a [(Image, f64)], masks: Option<&'a [Vec<f32>]>,
) -> CpuSetup<'a> {
    Setup {
        style_masks: masks,
        ..Setup::plain((arch, w, loss), content, styles)
    }
}

/// With one style of the output's size and a mask of ones everywhere, the masked objective is
/// the unmasked one: the same bits on either engine (x ∘ 1 = x, and Σ 1² = M exactly), and
/// within rounding on the f64 reference.
#[test]
fn an_all_ones_mask_is_the_unmasked_objective() {
    let parts = shallow();
    let content = load("tubingen.jpg", 40);
    let (h, w) = (content.h, content.w);
    let style = impasto::io::image::load_original(&common::image("starry_night.jpg"))
        .unwrap()
        .exactly(w, h);
    let styles = [(style.clone(), 1.0)];
    let ones = [vec![1.0f32; h * w]];
    let x: Vec<f32> = content.data.iter().map(|v| 0.8 * v + 0.1).collect();

    let cpu = |masks| {
        let mut s = CpuSession::new(&setup(&parts, &content, &styles, masks)).unwrap();
        s.set_image(&x);
        (s.evaluate().unwrap(), s.gradient())
    };
    let (plain, masked) = (cpu(None), cpu(Some(&ones)));
    assert_eq!(plain.0, masked.0, "cpu losses");
    let beta = parts.2.style_weight;
    println!(
        "β·style {:e} of total {:e}",
        beta * plain.0.style,
        plain.0.total
    );
    assert!(
        beta * plain.0.style > 0.01 * plain.0.total,
        "the style term counts"
    );
    assert_eq!(plain.1, masked.1, "cpu gradient");

    let c = ctx();
    let gpu = |masks| {
        let mut s =
            Session::new(&c.gpu, &c.kernels, &setup(&parts, &content, &styles, masks)).unwrap();
        s.set_image(&x).unwrap();
        (s.evaluate().unwrap(), s.gradient().unwrap())
    };
    let (plain, masked) = (gpu(None), gpu(Some(&ones)));
    assert_eq!(plain.0, masked.0, "gpu losses");
    assert_eq!(plain.1, masked.1, "gpu gradient");

    let (arch, weights, loss) = &parts;
    let cw = common::reference_weights(arch, weights, loss.deepest());
    let stages = arch.stages(loss.deepest(), h, w, Pooling::Max);
    let model = reference::Model {
        stages: &stages,
        weights: &cw,
        affine: weights.convention.affine(),
        loss,
    };
    let grams = model.grams_per_position(&to_f64(&style.data));
    let mut targets = model.targets(&to_f64(&content.data));
    targets.style = model.blended_style(&[(grams.clone(), 1.0)]);
    let xd = to_f64(&x);
    let unmasked = model.losses(&xd, &targets).style;
    targets.masked = vec![reference::MaskedStyle {
        mask: vec![1.0; h * w],
        weight: 1.0,
        grams,
    }];
    let guided = model.losses(&xd, &targets).style;
    println!("reference style loss: unmasked {unmasked:e}, all-ones mask {guided:e}");
    assert!((guided - unmasked).abs() <= 1e-12 * unmasked);
}

/// Four copies of an image, 2x2: the same statistics on four times the pixels (but for the
/// seams; mirrored copies would not do: they flip every oriented edge).
fn copies_2x2(img: &Image) -> Image {
    let (h, w) = (img.h, img.w);
    let mut data = vec![0.0; 3 * 4 * h * w];
    for c in 0..3 {
        for y in 0..2 * h {
            for x in 0..2 * w {
                let (sy, sx) = (y % h, x % w);
                data[(c * 2 * h + y) * 2 * w + x] = img.data[(c * h + sy) * w + sx];
            }
        }
    }
    Image {
        h: 2 * h,
        w: 2 * w,
        data,
    }
}

/// A style image with four times the pixels but the same statistics (four copies) pulls no
/// harder: its style targets (Gram matrices per position) have the single copy's norm within
/// 3 % at every layer, where the unnormalised Grams (the targets before) have 4 times it. The
/// targets themselves differ by the share of positions near the borders and seams (zero
/// padding reaches 12 px into the picture at block3_conv1), which halves as the size
/// doubles. (A 2x Lanczos upscale is no such image: its features are half as fine, and its
/// targets differ by that change of scale itself: docs/masks.md.)
#[test]
fn style_targets_do_not_depend_on_the_style_images_size() {
    let parts = shallow();
    let content = load("tubingen.jpg", 48);
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let mut moved = std::collections::BTreeMap::new();
    for (name, size) in [
        ("the_scream.jpg", 64),
        ("the_scream.jpg", 256),
        ("starry_night.jpg", 256),
    ] {
        // Cropped to multiples of 8 px, so that the copies meet the pooling windows as the
        // original does (max pooling is not shift-invariant).
        let img = load(name, size);
        let (h, w) = (img.h / 8 * 8, img.w / 8 * 8);
        let data = (0..3 * h * w)
            .map(|i| img.data[(i / (h * w) * img.h + i / w % h) * img.w + i % w])
            .collect();
        let one = Image { h, w, data };
        let four = copies_2x2(&one);
        let targets = |img: &Image| {
            let styles = [(img.clone(), 1.0)];
            let s = CpuSession::new(&setup(&parts, &content, &styles, None)).unwrap();
            s.style_targets().remove(0).grams
        };
        let (a, b) = (targets(&one), targets(&four));
        for (j, (a, b)) in a.iter().zip(&b).enumerate() {
            let diff: Vec<f32> = a.iter().zip(b).map(|(a, b)| a - b).collect();
            let (rel, ratio) = (norm(&diff) / norm(a), norm(b) / norm(a));
            println!(
                "{name} at {size} px, style layer {j}: 2x2 copies: norm ratio {ratio:.4}, target moved {:.2}%",
                100.0 * rel
            );
            moved.insert((name, size, j), rel);
            if size == 256 {
                assert!(
                    (ratio - 1.0).abs() < 0.03,
                    "{name} layer {j}: norm ratio {ratio}"
                );
            }
        }
        assert!(
            moved[&(name, size, 0)] < 0.05,
            "{name} at {size}: block1_conv1 moved"
        );
    }
    for j in 0..3 {
        let (small, large) = (
            moved[&("the_scream.jpg", 64, j)],
            moved[&("the_scream.jpg", 256, j)],
        );
        assert!(
            large < 0.75 * small,
            "layer {j}: {small} at 64 px, {large} at 256 px"
        );
    }
}

/// A soft left/right split of the picture as two grayscale masks, and a two-colour region
/// map with the same split, written to `dir` (w x h).
fn write_masks(dir: &Path, (w, h): (u32, u32)) -> [PathBuf; 4] {
    let ramp = |x: u32| ((x as f32 / (w - 1) as f32 - 0.3) * 2.5).clamp(0.0, 1.0);
    let left =
        image::GrayImage::from_fn(w, h, |x, _| image::Luma([(255.0 * (1.0 - ramp(x))) as u8]));
    let right = image::GrayImage::from_fn(w, h, |x, _| image::Luma([(255.0 * ramp(x)) as u8]));
    let map = image::RgbImage::from_fn(w, h, |x, _| match x < w / 2 {
        // JPEG-ish noise on the red.
        true => image::Rgb([250, 6, (x % 3) as u8]),
        false => image::Rgb([0, 0, 255]),
    });
    let paths = ["left.png", "right.png", "regions.png", "black.png"].map(|n| dir.join(n));
    left.save(&paths[0]).unwrap();
    right.save(&paths[1]).unwrap();
    map.save(&paths[2]).unwrap();
    image::GrayImage::new(w, h).save(&paths[3]).unwrap();
    paths
}

/// `impasto stylize` of tubingen with starry_night and the_scream on the real weights, small.
fn two_styles(dir: &Path, engine: &str, styles: [&str; 2]) -> Command {
    two_styles_at(dir, engine, styles, 32)
}

fn two_styles_at(dir: &Path, engine: &str, styles: [&str; 2], size: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.env("XDG_RUNTIME_DIR", dir)
        .args(["stylize", "--engine", engine, "--content"])
        .arg(common::image("tubingen.jpg"))
        .args(["--style", styles[0], "--style", styles[1], "--weights"])
        .arg(common::real_weights())
        .args([
            "--size",
            &size.to_string(),
            "--steps",
            "6",
            "--log-every",
            "3",
        ])
        .args(["--content-layers", "block2_conv1"])
        .args(["--style-layers", "block1_conv1,block2_conv1,block3_conv1"])
        .args(["--style-weight", "1e3", "--tv-weight", "1e2"]);
    c
}

fn image_path(name: &str) -> String {
    common::image(name).display().to_string()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run(mut c: Command) -> Output {
    let o = c.output().unwrap();
    println!("{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Masked runs on both engines agree on their losses, and a region map gives the masks'
/// run; the report lists each style with its mask.
#[test]
fn masked_runs_agree_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let [left, right, regions, _] = write_masks(dir.path(), (64, 48));
    let styles = [image_path("starry_night.jpg"), image_path("the_scream.jpg")];
    let masked = |engine: &str| {
        let (out, rep) = (
            dir.path().join(format!("{engine}.png")),
            dir.path().join(format!("{engine}.json")),
        );
        let mut c = two_styles(dir.path(), engine, [&styles[0], &styles[1]]);
        c.arg("--style-mask")
            .arg(&left)
            .arg("--style-mask")
            .arg(&right);
        c.arg("-o").arg(&out).arg("--report").arg(&rep);
        assert!(run(c).status.success());
        report(&rep)
    };
    let (cpu, gpu) = (masked("cpu"), masked("gpu"));
    let last = |r: &serde_json::Value, k: &str| r["steps"][2][k].as_f64().unwrap();
    for k in ["content", "style", "total"] {
        let (a, b) = (last(&cpu, k), last(&gpu, k));
        println!("{k} after 6 steps: cpu {a:e}, gpu {b:e}");
        assert!((a - b).abs() <= 1e-3 * a.abs(), "{k}: cpu {a} gpu {b}");
    }
    let listed = &cpu["settings"]["styles"];
    assert_eq!(
        listed[1]["mask"].as_str().unwrap(),
        right.display().to_string()
    );
    assert!((listed[0]["share"].as_f64().unwrap() - 0.5).abs() < 1e-12);

    let colour = [
        format!("#ff0000={}", styles[0]),
        format!("#0000ff={}", styles[1]),
    ];
    let (out, rep) = (
        dir.path().join("regions_out.png"),
        dir.path().join("regions.json"),
    );
    let mut c = two_styles(dir.path(), "cpu", [&colour[0], &colour[1]]);
    c.arg("--regions")
        .arg(&regions)
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&rep);
    assert!(run(c).status.success());
    let r = report(&rep);
    let listed = &r["settings"]["styles"];
    assert!(listed[0]["mask"]
        .as_str()
        .unwrap()
        .ends_with("regions.png #ff0000"));
    assert!((listed[0]["mask_coverage"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    // The style loss of the two regions is not that of the plain blend.
    let mut c = two_styles(dir.path(), "cpu", [&styles[0], &styles[1]]);
    let plain = dir.path().join("plain.json");
    c.arg("-o")
        .arg(dir.path().join("plain.png"))
        .arg("--report")
        .arg(&plain);
    assert!(run(c).status.success());
    let (a, b) = (last(&r, "style"), last(&report(&plain), "style"));
    assert!((a - b).abs() > 1e-2 * b, "regions {a} vs blend {b}");
}

/// Bad masks are refused before any work, naming the flag and the file, and nothing is
/// written.
#[test]
fn bad_masks_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let [left, right, regions, black] = write_masks(dir.path(), (64, 48));
    let styles = [image_path("starry_night.jpg"), image_path("the_scream.jpg")];
    let not_an_image = dir.path().join("notes.png");
    std::fs::write(&not_an_image, "not a picture").unwrap();
    // A mask whose only white pixels lie in the last row: at 31 px (31x23) that row is the
    // odd one the first pooling drops, so block2's map has nothing of it.
    let corner = dir.path().join("corner.png");
    image::GrayImage::from_fn(64, 48, |_, y| image::Luma([if y == 47 { 255 } else { 0 }]))
        .save(&corner)
        .unwrap();
    let out = dir.path().join("out.png");
    let red = format!("#ff0000={}", styles[0]);
    let green = format!("#00ff00={}", styles[1]);
    // Flags, the two --style values, the exit status, what the message says.
    type Case<'a> = (Vec<String>, [&'a str; 2], i32, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec!["--style-mask".into(), left.display().to_string()],
            [&styles[0], &styles[1]],
            2,
            vec!["--style-mask: 1 masks for 2 --style images"],
        ),
        (
            vec![
                "--style-mask".into(),
                not_an_image.display().to_string(),
                "--style-mask".into(),
                right.display().to_string(),
            ],
            [&styles[0], &styles[1]],
            1,
            vec!["--style-mask", "notes.png"],
        ),
        (
            vec![
                "--style-mask".into(),
                left.display().to_string(),
                "--style-mask".into(),
                black.display().to_string(),
            ],
            [&styles[0], &styles[1]],
            2,
            vec!["black.png", "selects no pixel at layer block1_conv1"],
        ),
        (
            vec![
                "--style-mask".into(),
                left.display().to_string(),
                "--style-mask".into(),
                corner.display().to_string(),
            ],
            [&styles[0], &styles[1]],
            2,
            vec![
                "corner.png",
                "at 31x23",
                "selects no pixel at layer block2_conv1",
                "shallower --style-layers",
            ],
        ),
        (
            vec!["--regions".into(), regions.display().to_string()],
            [&red, &green],
            2,
            vec!["--regions", "no pixel has the colour #00ff00"],
        ),
        (
            vec!["--regions".into(), regions.display().to_string()],
            [&red, &styles[1]],
            2,
            vec!["with --regions, each --style is COLOR=PATH"],
        ),
    ];
    for (flags, styles, status, says) in cases {
        let mut c = two_styles_at(dir.path(), "cpu", styles, 31);
        c.args(&flags).arg("-o").arg(&out);
        let o = run(c);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(status), "{flags:?}: {err}");
        for s in says {
            assert!(err.contains(s), "{flags:?}: {err} does not say {s}");
        }
        assert!(!err.contains("panicked"));
        assert!(!out.exists(), "{flags:?} wrote an output");
    }
}

/// The library's job with masks: coarse to fine (the masks resized per scale), L-BFGS and the
/// moving average together complete with a falling loss; a mask count other than the styles'
/// is a `BadSetting` before any work.
#[test]
fn masks_work_with_coarse_to_fine_lbfgs_and_averaging() {
    use impasto::job::{Engine, Error, Job, Losses, Optimizer, Quiet, StyleMask, Stylizer};
    let dir = tempfile::tempdir().unwrap();
    let [left, right, _, _] = write_masks(dir.path(), (64, 48));
    let losses = Losses {
        content_layers: vec!["block2_conv1".into()],
        style_layers: vec!["block1_conv1".into(), "block2_conv1".into()],
        style_weight: 1e3,
        tv_weight: 1e2,
        ..Losses::default()
    };
    let weights = Weights::load(&common::real_weights()).unwrap();
    let mut stylizer = Stylizer::new(Engine::cpu(), weights, &losses).unwrap();
    let (c, s1, s2) = (
        common::image("tubingen.jpg"),
        common::image("starry_night.jpg"),
        common::image("the_scream.jpg"),
    );
    let mut job = Job::open(&c, &[&s1, &s2]).unwrap();
    job.style_masks = Some(vec![
        StyleMask::open(&left).unwrap(),
        StyleMask::open(&right).unwrap(),
    ]);
    job.settings.size = 40;
    job.settings.min_size = Some(24);
    job.settings.steps = 8;
    job.settings.log_every = 1;
    job.settings.optimizer = Optimizer::Lbfgs;
    job.settings.average = 0.5;
    let outcome = stylizer.run(&job, &mut Quiet).unwrap();
    assert_eq!(outcome.ending, impasto::job::Ending::Completed);
    assert_eq!(outcome.scales.len(), 2, "{:?}", outcome.scales);
    let last_scale: Vec<_> = (outcome.entries.iter())
        .filter(|e| e.scale == outcome.scales.len() - 1)
        .collect();
    let (first, last) = (
        last_scale[0].losses.total,
        last_scale.last().unwrap().losses.total,
    );
    println!("last scale: total {first:e} -> {last:e}");
    assert!(last < first);

    job.style_masks.as_mut().unwrap().pop();
    match stylizer.run(&job, &mut Quiet) {
        Err(Error::BadSetting(m)) => assert!(m.contains("1 masks for 2 styles"), "{m}"),
        other => panic!("{:?}", other.map(|o| o.ending)),
    }
}

/// Not a check: prints how far a 2x Lanczos upscale of a style image moves its style targets
/// (docs/masks.md). `cargo test --release --test masks -- --ignored --nocapture`
#[test]
#[ignore]
fn upscaled_style_targets() {
    let parts = shallow();
    let content = load("tubingen.jpg", 48);
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    for (name, size) in [
        ("the_scream.jpg", 128),
        ("starry_night.jpg", 128),
        ("starry_night.jpg", 256),
    ] {
        let small = load(name, size);
        let large = impasto::job::upsample(&small, (2 * small.h, 2 * small.w));
        let targets = |img: &Image| {
            let styles = [(img.clone(), 1.0)];
            let s = CpuSession::new(&setup(&parts, &content, &styles, None)).unwrap();
            s.style_targets().remove(0).grams
        };
        let (a, b) = (targets(&small), targets(&large));
        for (j, (a, b)) in a.iter().zip(&b).enumerate() {
            let diff: Vec<f32> = a.iter().zip(b).map(|(a, b)| a - b).collect();
            let ratio = norm(b) / norm(a);
            println!(
                "| {name} | {}x{} | {j} | {:.1} % | {ratio:.2} | {:.2} |",
                small.w,
                small.h,
                100.0 * norm(&diff) / norm(a),
                4.0 * ratio
            );
        }
    }
}
