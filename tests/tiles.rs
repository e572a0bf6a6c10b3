//! The tiled evaluation on both engines (`cpu/tiled.rs`, `pipeline/tiled.rs`; the geometry:
//! `model::tiles`): its losses and image gradient against the same engine's untiled session's,
//! with the real shallow weights and with random weights of VGG19's shapes through
//! block5_conv2, sides no multiple of the tile, tiles smaller than their halo, two styles
//! under soft masks, periodic pictures; and after several Adam steps. The GPU engine runs on
//! whatever adapter the machine has (lavapipe in CI).

mod common;

use impasto::cpu::{CpuSession, Setup};
use impasto::model::{Arch, EngineSession, Image, LossConfig, StyleLossKind};
use impasto::pipeline::session::Session;
use impasto::weights::Weights;
use rand::{Rng, SeedableRng};

fn image(r: &mut impl Rng, h: usize, w: usize) -> Image {
    Image {
        h,
        w,
        data: (0..3 * h * w).map(|_| r.random::<f32>()).collect(),
    }
}

struct Problem {
    arch: Arch,
    weights: Weights,
    loss: LossConfig,
    content: Image,
    styles: Vec<(Image, f64)>,
    masks: Option<Vec<Vec<f32>>>,
}

/// Which engine a session runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum On {
    Cpu,
    Gpu,
}

impl Problem {
    fn session(&self, tile: Option<usize>) -> CpuSession {
        CpuSession::new(&self.setup(tile)).unwrap()
    }

    /// A session of this problem on engine `on`.
    fn on(&self, on: On, tile: Option<usize>) -> Box<dyn EngineSession + 'static> {
        match on {
            On::Cpu => Box::new(self.session(tile)),
            On::Gpu => {
                let c = common::ctx();
                Box::new(Session::new(&c.gpu, &c.kernels, &self.setup(tile)).unwrap())
            }
        }
    }

    fn setup(&self, tile: Option<usize>) -> Setup<'_> {
        Setup {
            style_masks: self.masks.as_deref(),
            tile,
            ..Setup::plain(
                (&self.arch, &self.weights, &self.loss),
                &self.content,
                &self.styles,
            )
        }
    }
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

/// Losses and gradient of an image away from the content, tiled and untiled, on the CPU engine.
fn check(p: &Problem, tile: usize, tol: f64) {
    check_on(On::Cpu, p, tile, tol)
}

/// The same on engine `on`.
fn check_on(on: On, p: &Problem, tile: usize, tol: f64) {
    let mut r = rand::rngs::StdRng::seed_from_u64(9);
    let x = image(&mut r, p.content.h, p.content.w).data;
    let (mut whole, mut tiled) = (p.on(on, None), p.on(on, Some(tile)));
    whole.set_image(&x).unwrap();
    tiled.set_image(&x).unwrap();
    let (a, ga) = whole.loss_and_gradient().unwrap();
    let (b, gb) = tiled.loss_and_gradient().unwrap();
    let scale = ga.iter().fold(0.0f32, |m, g| m.max(g.abs())) as f64;
    let grad = (ga.iter().zip(&gb))
        .map(|(a, b)| (a - b).abs() as f64 / scale)
        .fold(0.0, f64::max);
    println!(
        "{on:?}: {}x{} in tiles of {tile}: content {:.1e}, style {:.1e}, tv {:.1e}, image gradient {grad:.1e}",
        p.content.w,
        p.content.h,
        rel(b.content, a.content),
        rel(b.style, a.style),
        rel(b.tv, a.tv)
    );
    for (name, e) in [
        ("content", rel(b.content, a.content)),
        ("style", rel(b.style, a.style)),
        ("tv", rel(b.tv, a.tv)),
        ("image gradient", grad),
    ] {
        assert!(e < tol, "{name}: relative difference {e:e}");
    }
}

fn shallow(size: usize) -> Problem {
    let arch = Arch::vgg19();
    let weights = Weights::load(&common::real_weights()).unwrap();
    let load = |n: &str, s| impasto::io::image::load(&common::image(n), Some(s)).unwrap();
    Problem {
        loss: common::loss_at(
            vec![arch.layer_index("block3_conv2").unwrap()],
            vec![0, 2, 4],
        ),
        arch,
        weights,
        content: load("tubingen.jpg", size),
        styles: vec![
            (load("starry_night.jpg", size), 3.0),
            (load("the_scream.jpg", size), 1.0),
        ],
        masks: None,
    }
}

#[test]
fn tiled_losses_and_gradient_equal_the_untiled_ones() {
    // block3_conv2: stride 4, halo 16; 61x46 is no multiple of the tiles.
    let p = shallow(61);
    check(&p, 8, 1e-5);
    check(&p, 24, 1e-5);
    // The W2 loss with layer weights: moments summed over tiles (the square roots then taken
    // once, on the sums), its gradient's per-channel part windowed to each tile's interior.
    let mut w2 = shallow(61);
    w2.loss.style_loss = StyleLossKind::W2;
    w2.loss.style_layer_weights = vec![4.0, 2.0, 1.0];
    check(&w2, 24, 1e-5);
    // Two styles under soft masks (the guided Gram matrices, each tile's window times the mask).
    check(&ramp_masks(p), 12, 1e-5);
}

/// `p` with its two styles under soft masks: a ramp across the picture and its complement.
fn ramp_masks(p: Problem) -> Problem {
    let (h, w) = (p.content.h, p.content.w);
    let ramp: Vec<f32> = (0..h * w)
        .map(|q| (q % w) as f32 / (w - 1) as f32)
        .collect();
    let rest = ramp.iter().map(|v| 1.0 - v).collect();
    Problem {
        masks: Some(vec![ramp, rest]),
        ..p
    }
}

/// A periodic picture (`--seamless`): the halos wrap around the edges, every tile's crop is
/// whole, and the tiled objective is the circularly padded untiled one — tiles smaller than
/// their halo, and one tile whose crop wraps around the whole image more than once.
#[test]
fn seamless_tiles_wrap_their_halos_around_and_equal_the_untiled_run() {
    // 64x48: both sides on block3_conv2's pooling grid (4 px), as wrapping needs.
    let mut p = shallow(64);
    p.loss.seamless = true;
    for tile in [8, 24, 64] {
        check(&p, tile, 1e-5);
    }
    // The wrapped halos are needed: zero padding at the picture's edges gives another result.
    let mut r = rand::rngs::StdRng::seed_from_u64(9);
    let x = image(&mut r, p.content.h, p.content.w).data;
    let (mut a, mut b) = (p.session(None), p.session(Some(24)));
    p.loss.seamless = false;
    let mut c = p.session(Some(24));
    for s in [&mut a, &mut b, &mut c] {
        s.set_image(&x);
    }
    let style = |s: &mut CpuSession| s.loss_and_gradient().unwrap().0.style;
    let (wrapped, tiled, zeros) = (style(&mut a), style(&mut b), style(&mut c));
    assert!(
        rel(tiled, wrapped) < 1e-5 && rel(zeros, wrapped) > 1e-3,
        "{wrapped} {tiled} {zeros}"
    );
}

#[test]
fn tiled_equals_untiled_through_block5_with_random_vgg19_weights() {
    let p = block5((230, 250), (200, 200));
    // Stride 16, halo 96: the middle tiles' crops have inner edges on both sides.
    check(&p, 80, 1e-5);
}

/// Random weights of VGG19's shapes through block5_conv2 (content there, style at
/// block1_conv1, block4_conv1 and block5_conv2), a content image of `(h, w)` and a style image
/// of `style`, random.
fn block5((h, w): (usize, usize), style: (usize, usize)) -> Problem {
    let arch = Arch::vgg19();
    let deepest = arch.layer_index("block5_conv2").unwrap();
    let he = |c: &impasto::model::vgg19::ConvSpec| (2.0 / (9 * c.cin) as f32).sqrt();
    let weights = Weights::random(&arch, deepest, 3, he, 0.0..0.1);
    let mut r = rand::rngs::StdRng::seed_from_u64(4);
    Problem {
        loss: common::loss_at(
            vec![deepest],
            vec![0, arch.layer_index("block4_conv1").unwrap(), deepest],
        ),
        content: image(&mut r, h, w),
        styles: vec![(image(&mut r, style.0, style.1), 1.0)],
        arch,
        weights,
        masks: None,
    }
}

#[test]
fn tiled_adam_follows_the_untiled_run() {
    adam_follows(On::Cpu);
}

/// Five Adam steps at 48 px on engine `on`, whole and in tiles of 16: the same totals and
/// images, the order of f32 sums aside.
fn adam_follows(on: On) {
    let p = shallow(48);
    let (mut whole, mut tiled) = (p.on(on, None), p.on(on, Some(16)));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        a.push(whole.step(true).unwrap().unwrap().total);
        b.push(tiled.step(true).unwrap().unwrap().total);
    }
    let (xa, xb) = (whole.image().unwrap().data, tiled.image().unwrap().data);
    let dx = (xa.iter().zip(&xb)).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("{on:?}: totals {a:?} vs {b:?}; images differ by at most {dx:.1e}");
    for (x, y) in a.iter().zip(&b) {
        assert!(rel(*y, *x) < 1e-3, "{a:?} vs {b:?}");
    }
    assert!(dx < 1e-3);
}

/// `impasto stylize` with the shallow layers, 3 Adam steps, and `extra`.
fn stylize(dir: &std::path::Path, name: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_impasto"))
        .env("XDG_RUNTIME_DIR", dir)
        .args(["stylize", "--content"])
        .arg(common::image("tubingen.jpg"))
        .arg("--style")
        .arg(common::image("starry_night.jpg"))
        .arg("--weights")
        .arg(common::real_weights())
        .args(["--content-layers", "block3_conv2"])
        .args(["--style-layers", "block1_conv1,block2_conv1,block3_conv1"])
        .args(["--steps", "3", "--log-every", "1"])
        .args(extra)
        .arg("-o")
        .arg(dir.join(format!("{name}.png")))
        .arg("--report")
        .arg(dir.join(format!("{name}.json")))
        .output()
        .unwrap()
}

#[test]
fn tile_flag_runs_the_same_job_and_refuses_what_it_cannot_tile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(d.join(format!("{name}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    // Both engines (the GPU's tiles larger: the software adapter is slow), and L-BFGS.
    let runs = [
        ("whole", &["--engine", "cpu"][..]),
        ("tiled", &["--engine", "cpu", "--tile", "16"][..]),
        ("gpu-whole", &["--engine", "gpu"][..]),
        ("gpu-tiled", &["--engine", "gpu", "--tile", "32"][..]),
        (
            "gpu-lbfgs-whole",
            &["--engine", "gpu", "--optimizer", "lbfgs"][..],
        ),
        (
            "gpu-lbfgs-tiled",
            &["--engine", "gpu", "--optimizer", "lbfgs", "--tile", "32"][..],
        ),
    ];
    for (name, extra) in runs {
        let o = stylize(d, name, &[&["--size", "64"][..], extra].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (whole, tiled) = (read("whole"), read("tiled"));
    assert_eq!(
        tiled["settings"]["tiles"],
        serde_json::json!({"tile": 16, "halo": 16, "count": 12})
    );
    let totals = |r: &serde_json::Value| -> Vec<f64> {
        (r["steps"].as_array().unwrap().iter())
            .map(|s| s["total"].as_f64().unwrap())
            .collect()
    };
    let pairs = [
        (whole, tiled),
        (read("gpu-whole"), read("gpu-tiled")),
        (read("gpu-lbfgs-whole"), read("gpu-lbfgs-tiled")),
    ];
    for (whole, tiled) in pairs {
        let (a, b) = (totals(&whole), totals(&tiled));
        println!("totals {a:?} whole, {b:?} in tiles");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(rel(*y, *x) < 1e-4, "{a:?} vs {b:?}");
        }
    }
    // Refused before any work, naming the flag (exit 2): off the pooling grid (on either
    // engine), with --seamless on a picture whose sides are off the grid (62x46).
    for (extra, says) in [
        (&["--engine", "cpu", "--tile", "6"][..], "multiple of 4 px"),
        (&["--engine", "gpu", "--tile", "6"][..], "multiple of 4 px"),
        (
            &[
                "--engine",
                "cpu",
                "--tile",
                "16",
                "--seamless",
                "--size",
                "62",
            ][..],
            "--seamless",
        ),
    ] {
        let o = stylize(d, "refused", extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("--tile") && err.contains(says), "{err}");
        assert!(!d.join("refused.png").exists());
    }
}

#[test]
fn a_run_that_does_not_fit_whole_takes_the_largest_tile_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // `stylize` at 128x96 on `engine` under `cap`: its stderr, once it has succeeded.
    let auto = |name: &str, engine: &str, cap: &str| {
        let o = stylize(
            d,
            name,
            &["--engine", engine, "--size", "128", "--max-memory", cap],
        );
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains("does not fit whole: in tiles of 64 px"),
            "{err}"
        );
    };
    // 128x96 with the shallow layers plans 161.3 MiB whole on the CPU engine, 156.9 MiB in
    // tiles of 64 (34.9 of them the Winograd-transformed weights and 107 the host's share —
    // the program, the weights as read, the pictures — which tiles do not shrink).
    auto("auto", "cpu", "159M");
    let text = std::fs::read_to_string(d.join("auto.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["settings"]["tiles"]["tile"], 64);
    assert_eq!(r["settings"]["tiles"]["count"], 4);
    // Too little for any tile: refused as before, naming the memory.
    let o = stylize(
        d,
        "none",
        &["--engine", "cpu", "--size", "128", "--max-memory", "5M"],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("would not fit"));
    // The GPU engine too: 128x96 plans 129.2 MiB whole there, 124.0 MiB in tiles of 64
    // (lavapipe's memory is the host's: its share counts).
    auto("gpu", "gpu", "126M");
}

/// `impasto batch` and `impasto video` take tiles too when a job (the frames) would not fit
/// whole, say so once, and finish: the same 128x96 plans under the same 159M as above.
#[test]
fn batch_and_video_take_tiles_when_a_job_does_not_fit_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let command = |verb: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_impasto"));
        c.env("XDG_RUNTIME_DIR", d).arg(verb);
        c
    };
    let shared = [
        "--engine",
        "cpu",
        "--content-layers",
        "block3_conv2",
        "--style-layers",
        "block1_conv1,block2_conv1,block3_conv1",
        "--size",
        "128",
        "--steps",
        "2",
        "--max-memory",
        "159M",
    ];
    let (tubingen, starry) = (
        common::image("tubingen.jpg"),
        common::image("starry_night.jpg"),
    );
    let manifest = d.join("jobs.csv");
    let row = format!(
        "{},{},{}",
        tubingen.display(),
        starry.display(),
        d.join("b.png").display()
    );
    std::fs::write(&manifest, format!("content,style,output\n{row}\n")).unwrap();
    let o = (command("batch").arg(&manifest).arg("--weights"))
        .arg(common::real_weights())
        .args(shared)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("does not fit whole: in tiles of 64 px"),
        "{err}"
    );
    assert_eq!(image::image_dimensions(d.join("b.png")).unwrap(), (128, 96));

    // Two 128x96 frames.
    let frames = d.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let img = impasto::io::image::load_original(&tubingen).unwrap();
    for k in 0..2u32 {
        let crop = image::imageops::crop_imm(&img.rgb, 10 * k, 20, 128, 96).to_image();
        crop.save(frames.join(format!("f{k}.png"))).unwrap();
    }
    let o = (command("video")
        .arg("--content")
        .arg(&frames)
        .arg("--output"))
    .arg(d.join("out"))
    .arg("--style")
    .arg(&starry)
    .arg("--weights")
    .arg(common::real_weights())
    .args(shared)
    .args(["--frame-steps", "1"])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        err.matches("do not fit whole: in tiles of 64 px").count(),
        1,
        "{err}"
    );
    for k in 0..2 {
        let out = d.join("out").join(format!("f{k}.png"));
        assert_eq!(image::image_dimensions(out).unwrap(), (128, 96));
    }
}

// The GPU engine's tiled passes (`pipeline/tiled.rs`) against its untiled objective: the same
// problems, with fewer tiles (the software adapter is slow).

#[test]
fn gpu_tiled_losses_and_gradient_equal_the_untiled_ones() {
    let p = shallow(61);
    check_on(On::Gpu, &p, 24, 1e-5);
    // The W2 loss: channel sums over the tiles' windows, the host's square roots between the
    // passes, the per-channel gradient windowed in pass 2.
    let mut w2 = shallow(61);
    w2.loss.style_loss = StyleLossKind::W2;
    w2.loss.style_layer_weights = vec![4.0, 2.0, 1.0];
    check_on(On::Gpu, &w2, 24, 1e-5);
    // Tiles of 12 px: smaller than their 16-px halo.
    check_on(On::Gpu, &ramp_masks(p), 12, 1e-5);
}

#[test]
fn gpu_seamless_tiles_wrap_their_halos_around() {
    let mut p = shallow(64);
    p.loss.seamless = true;
    // 64: one tile, whose crop wraps around the whole picture more than once.
    for tile in [32, 64] {
        check_on(On::Gpu, &p, tile, 1e-5);
    }
}

#[test]
fn gpu_tiled_equals_untiled_through_block5_with_random_vgg19_weights() {
    let mut p = block5((32, 336), (64, 64));
    // Stride 16, halo 96, tiles of 112 px: the middle tile's crop (columns 16..320) has inner
    // edges on both sides; then the same across the rows. (Thin pictures: the software
    // adapter runs VGG19 to block5 slowly.)
    check_on(On::Gpu, &p, 112, 1e-5);
    p.content = block5((336, 32), (64, 64)).content;
    check_on(On::Gpu, &p, 112, 1e-5);
}

#[test]
fn gpu_tiled_adam_follows_the_untiled_run() {
    adam_follows(On::Gpu);
}

/// An image too large to bind whole (the 8K plan's, on an adapter that binds 128 MiB) is bound a
/// plane at a time by the tiled session's whole-image kernels (crop, crop gradient, TV, Adam):
/// with the binding limit lowered to one plane of a 48x36 picture, the same steps.
#[test]
fn gpu_tiled_image_bound_a_plane_at_a_time_takes_the_same_steps() {
    let p = shallow(48);
    let c = common::ctx();
    let mut narrow = impasto::kernels::Kernels::new(&c.gpu).unwrap();
    let plane = 4 * p.content.h * p.content.w;
    narrow.set_binding_limit((plane + 260) as u64);
    let setup = p.setup(Some(24));
    let mut a = Session::new(&c.gpu, &c.kernels, &setup).unwrap();
    let mut b = Session::new(&c.gpu, &narrow, &setup).unwrap();
    // (The whole-image kernels' dispatches: one for the whole image, three a plane each.)
    let count = |s: &Session, name: &str| {
        (s.step_dispatches(false).iter())
            .filter(|d| d.name == name)
            .count()
    };
    assert_eq!((count(&a, "tv_grad"), count(&b, "tv_grad")), (1, 3));
    assert!(count(&b, "adam_update") > 1);
    for _ in 0..2 {
        let (x, y) = (
            a.step(true).unwrap().unwrap(),
            b.step(true).unwrap().unwrap(),
        );
        assert!(rel(y.total, x.total) < 1e-6, "{} vs {}", x.total, y.total);
    }
    let (xa, xb) = (a.image().unwrap().data, b.image().unwrap().data);
    let dx = (xa.iter().zip(&xb)).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(dx < 1e-6, "images differ by {dx}");
}

/// A style image one plane of which is past the adapter's binding limit (a 7680-px painting on
/// lavapipe's 128 MiB) makes its targets a crop at a time, never uploaded whole: the tiled
/// session is made (dry: every buffer, no kernel run), in far less than the image's memory.
/// (Its targets by tiles equal the whole image's: the tests above, whose style images go the
/// same way.)
#[test]
fn gpu_tiled_style_image_past_the_binding_limit_takes_a_crop_of_memory() {
    let c = common::ctx();
    let limit = (c.gpu.limits.max_storage_buffer_binding_size).min(c.gpu.limits.max_buffer_size);
    if limit > 256 << 20 {
        println!(
            "(skipped: {} binds {} MiB, too large a picture to build here)",
            c.gpu.info.name,
            limit >> 20
        );
        return;
    }
    let side = ((limit / 4) as f64).sqrt() as usize + 8;
    let mut p = shallow(48);
    p.styles = vec![(
        Image {
            h: side,
            w: side,
            data: vec![0.5; 3 * side * side],
        },
        1.0,
    )];
    let s = Session::dry(&c.gpu, &c.kernels, &p.setup(Some(128))).unwrap();
    let plan = s.plan();
    println!(
        "{side}x{side} style image ({} MiB a plane): setup {} MiB, peak {} MiB",
        (4 * side * side) >> 20,
        plan.setup_only >> 20,
        plan.peak() >> 20
    );
    assert!(plan.peak() < (4 * side * side / 2) as u64, "{plan:?}");
}

/// With 16-bit feature maps (`--storage f16`) the tiled and untiled objectives agree to f16's
/// rounding: the maps are rounded where they are stored, and summed in another order.
#[test]
fn gpu_tiled_f16_maps_follow_the_untiled_ones() {
    let c = common::ctx();
    if !c.gpu.features.contains(wgpu::Features::SHADER_F16) {
        println!("(skipped: {} has no shader-f16)", c.gpu.info.name);
        return;
    }
    let tiling = impasto::kernels::Tiling::for_adapter(&c.gpu.info);
    let k = impasto::kernels::Kernels::with_options(&c.gpu, tiling, impasto::kernels::Storage::F16)
        .unwrap();
    let p = shallow(48);
    let mut r = rand::rngs::StdRng::seed_from_u64(9);
    let x = image(&mut r, p.content.h, p.content.w).data;
    let run = |tile| {
        let mut s = Session::new(&c.gpu, &k, &p.setup(tile)).unwrap();
        s.set_image(&x).unwrap();
        s.loss_and_gradient().unwrap()
    };
    let ((a, ga), (b, gb)) = (run(None), run(Some(24)));
    let scale = ga.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    let grad = (ga.iter().zip(&gb)).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    println!(
        "f16: total {:.1e}, image gradient {grad:.1e}",
        rel(b.total, a.total)
    );
    assert!(
        rel(b.total, a.total) < 1e-5 && grad < 5e-3,
        "{a:?} {b:?} {grad}"
    );
}
