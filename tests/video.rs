//! Video: the temporal term against the f64 reference on both engines (the flow, warping and
//! consistency weights are tests/flow.rs's), long-term consistency's and the multi-pass
//! start's inputs, and `impasto video` runs (a directory of frames in and out, resumed; a
//! video file in and out through ffmpeg; bad input refused; the flicker of the defaults on a
//! pan and a turn at two settings against frame-by-frame runs; passes and long-term terms).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{check, ctx, to_f64};
use impasto::cpu::CpuSession;
use impasto::model::engine::Setup;
use impasto::model::temporal::Temporal;
use impasto::model::{Arch, EngineSession, Image};
use impasto::pipeline::session::Session;
use impasto::reference;
use impasto::video::motion::{frames, Motion};
use impasto::video::temporal::{blended_start, nearest_first};
use impasto::video::warp::{stylisation, warping_errors};
use impasto::weights::Weights;

fn load(name: &str, size: usize) -> Image {
    impasto::io::image::load(&common::image(name), Some(size)).unwrap()
}

/// Both engines' temporal value and the change it makes to the image gradient, against the
/// reference's Σ c (x − w)² / (3HW) and its gradient (λ = 1e13, large enough that the
/// difference of the gradients is the temporal term's, soft weights with zeros).
#[test]
fn the_temporal_term_matches_the_reference_on_both_engines() {
    let arch = Arch::vgg19();
    let weights = Weights::load(&common::real_weights()).unwrap();
    let loss = common::small_loss(&arch);
    let content = load("tubingen.jpg", 24);
    let (h, w) = (content.h, content.w);
    let styles = [(load("starry_night.jpg", 24), 1.0)];
    let target = Image {
        h,
        w,
        data: content.data.iter().map(|v| (1.0 - v) * 0.7 + 0.1).collect(),
    };
    let c: Vec<f32> = (0..h * w)
        .map(|p| ((p % 7) as f32 / 6.0).min(0.9) * (p % 5 != 0) as u8 as f32)
        .collect();
    let temporal = Temporal {
        target: target.clone(),
        weights: c.clone(),
        weight: 1e13,
    };
    let setup = |t| Setup {
        temporal: t,
        ..Setup::plain((&arch, &weights, &loss), &content, &styles)
    };
    let t = &temporal;
    let x: Vec<f32> = content.data.iter().map(|v| 0.8 * v + 0.05).collect();
    let (xd, td, cd) = (to_f64(&x), to_f64(&target.data), to_f64(&c));
    let want = reference::temporal_loss(&xd, &td, &cd);
    let want_grad: Vec<f64> = reference::temporal_grad(&xd, &td, &cd)
        .iter()
        .map(|g| 1e13 * g)
        .collect();

    let cpu = |t| {
        let mut s = CpuSession::new(&setup(t)).unwrap();
        s.set_image(&x);
        (s.evaluate().unwrap(), s.gradient())
    };
    let ((plain, g0), (with, g1)) = (cpu(None), cpu(Some(t)));
    check("cpu temporal", &[with.temporal as f32], &[want], 1e-5);
    check(
        "cpu total",
        &[(with.total - plain.total) as f32],
        &[1e13 * want],
        1e-4,
    );
    let diff: Vec<f32> = g1.iter().zip(&g0).map(|(a, b)| a - b).collect();
    check("cpu temporal gradient", &diff, &want_grad, 1e-4);

    let c = ctx();
    let gpu = |t| {
        let mut s = Session::new(&c.gpu, &c.kernels, &setup(t)).unwrap();
        s.set_image(&x).unwrap();
        (s.evaluate().unwrap(), s.gradient().unwrap())
    };
    let ((plain, g0), (with, g1)) = (gpu(None), gpu(Some(t)));
    check("gpu temporal", &[with.temporal as f32], &[want], 1e-5);
    check(
        "gpu total",
        &[(with.total - plain.total) as f32],
        &[1e13 * want],
        1e-4,
    );
    let diff: Vec<f32> = g1.iter().zip(&g0).map(|(a, b)| a - b).collect();
    check("gpu temporal gradient", &diff, &want_grad, 1e-4);

    // The reference's gradient against its finite differences.
    for i in [0, 17, xd.len() / 2, xd.len() - 1] {
        let mut xp = xd.clone();
        xp[i] += 1e-6;
        let fd = (reference::temporal_loss(&xp, &td, &cd) - want) / 1e-6;
        let g = reference::temporal_grad(&xd, &td, &cd)[i];
        assert!(
            (fd - g).abs() <= 1e-6 * g.abs().max(1e-3),
            "pixel {i}: {fd} vs {g}"
        );
    }
}

fn video_command(dir: &Path) -> Command {
    video_command_on(dir, "cpu")
}

/// The same on `engine`.
fn video_command_on(dir: &Path, engine: &str) -> Command {
    let mut c = video_command_steps(dir, engine);
    c.args(["--frame-steps", "2"]);
    c
}

/// The same without `--frame-steps`.
fn video_command_steps(dir: &Path, engine: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.env("XDG_RUNTIME_DIR", dir)
        .args(["video", "--engine", engine, "--style"])
        .arg(common::image("starry_night.jpg"))
        .arg("--weights")
        .arg(common::real_weights())
        .args(["--content-layers", "block2_conv1"])
        .args(["--style-layers", "block1_conv1,block2_conv1"])
        .args(["--style-weight", "1e3", "--size", "32", "--steps", "4"]);
    c
}

fn run(mut c: Command) -> Output {
    let o = c.output().unwrap();
    println!("{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Four 40x30 frames panning across tubingen, as PNG files in `dir`.
fn write_frames(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let img = impasto::io::image::load_original(&common::image("tubingen.jpg")).unwrap();
    for k in 0..4u32 {
        let crop = image::imageops::crop_imm(&img.rgb, 20 + 3 * k, 40, 40, 30).to_image();
        crop.save(dir.join(format!("shot_{k:02}.png"))).unwrap();
    }
}

/// `impasto video` (the small CPU settings, `extra` flags) of `write_frames`'s four frames in
/// `dir`/in to `dir`/`out` with a report; its exit status and report.
fn video_of_frames(
    dir: &Path, engine: &str, extra: &[&str], out: &str,
) -> (bool, serde_json::Value) {
    let rep = dir.join(format!("{out}.json"));
    let mut c = video_command_on(dir, engine);
    c.args(extra).arg("--content").arg(dir.join("in"));
    c.arg("-o").arg(dir.join(out)).arg("--report").arg(&rep);
    let ok = run(c).status.success();
    let report = std::fs::read_to_string(&rep).map_or(serde_json::Value::Null, |r| {
        serde_json::from_str(&r).unwrap()
    });
    (ok, report)
}

/// A directory of frames in and out: one PNG per frame with the input's names, the report's
/// entries; a rerun keeps them all; removing one redoes that one only.
#[test]
fn a_directory_of_frames_is_stylized_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    write_frames(&dir.path().join("in"));
    let go = || {
        let (ok, report) = video_of_frames(dir.path(), "cpu", &[], "out");
        assert!(ok);
        report
    };
    let r = go();
    let statuses = |r: &serde_json::Value| -> Vec<String> {
        (r["frames"].as_array().unwrap().iter())
            .map(|f| f["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(statuses(&r), ["stylized"; 4]);
    for k in 0..4 {
        let f = &r["frames"][k];
        assert_eq!(f["name"], format!("shot_{k:02}.png"));
        assert_eq!(f["steps"], if k == 0 { 4 } else { 2 });
        assert_eq!(f["temporal"].as_f64().unwrap() > 0.0, k > 0, "{f}");
        let img = image::open(out.join(format!("shot_{k:02}.png"))).unwrap();
        assert_eq!((img.width(), img.height()), (32, 24));
    }
    let first = std::fs::read(out.join("shot_00.png")).unwrap();
    assert_eq!(statuses(&go()), ["kept"; 4]);
    assert_eq!(
        std::fs::read(out.join("shot_00.png")).unwrap(),
        first,
        "kept untouched"
    );
    std::fs::remove_file(out.join("shot_02.png")).unwrap();
    assert_eq!(statuses(&go()), ["kept", "kept", "stylized", "kept"]);
}

/// A video file in, a video file out, through ffmpeg: the input's size and frame count.
#[test]
fn a_video_file_is_stylized_through_ffmpeg() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        println!("SKIPPED: no ffmpeg on PATH (scripts/test installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (frames, input, out) = (
        dir.path().join("in"),
        dir.path().join("in.mp4"),
        dir.path().join("out.mkv"),
    );
    write_frames(&frames);
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-framerate",
            "10",
            "-pattern_type",
            "glob",
            "-i",
        ])
        .arg(frames.join("shot_*.png"))
        .args(["-pix_fmt", "yuv420p"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(made.success());
    let mut c = video_command(dir.path());
    c.arg("--content").arg(&input).arg("-o").arg(&out);
    assert!(run(c).status.success());
    let probe = impasto::video::ffmpeg::probe(&out).unwrap();
    assert_eq!(
        (probe.width, probe.height, probe.rate.as_str()),
        (40, 30, "10/1")
    );
    let n = std::fs::read_dir(dir.path().join("out.mkv.frames"))
        .unwrap()
        .count();
    assert_eq!(n, 4);
}

/// Bad input is refused before any frame is written, with a message naming it.
#[test]
fn bad_video_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (frames, empty, mixed) = (
        dir.path().join("in"),
        dir.path().join("empty"),
        dir.path().join("mixed"),
    );
    write_frames(&frames);
    std::fs::create_dir_all(&empty).unwrap();
    write_frames(&mixed);
    image::RgbImage::new(20, 20)
        .save(mixed.join("shot_09.png"))
        .unwrap();
    let (out, txt) = (dir.path().join("out"), dir.path().join("out.txt"));
    let cases: Vec<(&Path, &Path, i32, &str)> = vec![
        (&empty, &out, 1, "has no frames"),
        (&frames, &frames, 2, "--output"),
        (
            &mixed,
            &out,
            1,
            "frame shot_09.png is 20x20, the first frame 40x30",
        ),
        (&frames, &txt, 1, "give a directory"),
    ];
    for (input, output, status, says) in cases {
        let mut c = video_command(dir.path());
        c.arg("--content").arg(input).arg("-o").arg(output);
        let o = run(c);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(status), "{err}");
        assert!(err.contains(says), "{err} does not say {says}");
        assert!(!err.contains("panicked"));
    }
    // Without ffmpeg on PATH, a video output says how to get it.
    let mut c = video_command(dir.path());
    c.env("PATH", "/nonexistent")
        .arg("--content")
        .arg(&frames)
        .arg("-o")
        .arg(dir.path().join("o.mp4"));
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("apt-get install ffmpeg"), "{err}");
}

/// Ctrl-C during a frame lets that frame finish and be written, then stops with status 130;
/// the same command resumes with the frames after it. (The signal lands after the first
/// frame's line: inside the second frame, or before it starts, at the boundary — either stops
/// at a whole frame.)
#[test]
fn ctrl_c_stops_after_the_current_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (frames, out) = (dir.path().join("in"), dir.path().join("out"));
    write_frames(&frames);
    let mut c = video_command_steps(dir.path(), "cpu");
    // Long enough a frame that the signal lands inside the second.
    c.arg("--content")
        .arg(&frames)
        .arg("-o")
        .arg(&out)
        .args(["--frame-steps", "1000"]);
    let mut child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (status, rest) = common::interrupt_after(&mut child, "frame 1/4");
    assert_eq!(status, Some(130), "{rest:?}");
    let written: Vec<bool> = (0..4)
        .map(|k| out.join(format!("shot_{k:02}.png")).exists())
        .collect();
    // The frames written: the first, and the second when the signal landed inside it.
    let kept = written.iter().take_while(|&&w| w).count();
    assert!((1..=2).contains(&kept), "{written:?} {rest:?}");
    assert!(written[kept..].iter().all(|&w| !w), "{written:?}");
    if kept == 2 {
        assert!(rest.iter().any(|l| l.starts_with("frame 2/4")), "{rest:?}");
    }
    let mut c = video_command(dir.path());
    c.arg("--content").arg(&frames).arg("-o").arg(&out);
    let o = run(c);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let (last_kept, next) = (
        format!("frame {kept}/4 shot_{:02}.png kept", kept - 1),
        format!("frame {}/4 shot_{kept:02}.png stylized", kept + 1),
    );
    assert!(err.contains(&last_kept) && err.contains(&next), "{err}");
}

/// Long-term consistency's weights: each pixel follows the nearest earlier frame whose flow is
/// consistent there, the previous frame's result standing where none is (weight 0).
#[test]
fn each_pixel_follows_the_nearest_consistent_frame() {
    let (h, w) = (2, 3);
    let plain = |v: f32| Image {
        h,
        w,
        data: vec![v; 3 * h * w],
    };
    let layers = vec![
        (plain(0.1), vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
        (plain(0.2), vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        (plain(0.3), vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0]),
    ];
    let got = nearest_first(layers);
    assert_eq!(got.weights, [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
    let want = [0.1, 0.2, 0.3, 0.1, 0.1, 0.3];
    for ch in 0..3 {
        assert_eq!(got.target.data[ch * h * w..][..h * w], want);
    }
    assert!((got.consistent - 5.0 / 6.0).abs() < 1e-12);
    // A later pass starts half from the target where it is trusted, else from its result.
    let start = blended_start(&got, &plain(0.5), 0.5);
    let want = [0.3, 0.35, 0.4, 0.3, 0.5, 0.4];
    for (g, w) in start.data.iter().zip(want.iter().cycle()) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
}

/// The two sets of settings of docs/video.md's flicker tables: a style weight and layers each.
const SETTINGS: [&[&str]; 2] = [
    &[
        "--style-weight",
        "1e3",
        "--content-layers",
        "block3_conv2",
        "--style-layers",
        "block1_conv1,block2_conv1,block3_conv1",
    ],
    &[
        "--style-weight",
        "1e5",
        "--content-layers",
        "block2_conv2",
        "--style-layers",
        "block1_conv2,block2_conv2,block3_conv4",
    ],
];

/// `count` frames of 96x64 of a known motion over a real photo, written to `dir` as PNGs;
/// returned as read back.
fn moving_frames(dir: &Path, m: Motion, count: usize) -> Vec<Image> {
    std::fs::create_dir_all(dir).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/video/chelsea.jpg");
    let picture = impasto::io::image::load(&path, Some(288)).unwrap();
    let enc = impasto::io::image::Encoding {
        bit_depth: 8,
        icc: None,
    };
    (frames(&picture, (96, 64), m, count).iter().enumerate())
        .map(|(t, f)| {
            let p = dir.join(format!("f{t:02}.png"));
            impasto::io::image::save(f, &p, &enc).unwrap();
            impasto::io::image::load(&p, None).unwrap()
        })
        .collect()
}

fn read_frames(dir: &Path, count: usize) -> Vec<Image> {
    (0..count)
        .map(|t| impasto::io::image::load(&dir.join(format!("f{t:02}.png")), None).unwrap())
        .collect()
}

/// Frames of the flicker test: few, for the test's time (docs/video.md measures 8).
const FRAMES: usize = 4;

/// With the default flags, at two style weights and sets of layers, on a pan and on a
/// rotation with zoom: the warping error of `impasto video` is at most half that of the
/// frames stylised one by one, and its frames as far from their content (as stylised) as
/// half theirs at least.
#[test]
fn the_default_temporal_weight_holds_the_flicker_down() {
    let pan = Motion {
        shift: (3.0, 1.0),
        degrees: 0.0,
        zoom: 1.0,
    };
    let turn = Motion {
        shift: (0.0, 0.0),
        degrees: 1.5,
        zoom: 1.02,
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, m) in [("pan", pan), ("turn", turn)] {
        let input = dir.path().join(name);
        let content = moving_frames(&input, m, FRAMES);
        for (k, flags) in SETTINGS.iter().enumerate() {
            let common = |c: &mut Command| {
                c.env("XDG_RUNTIME_DIR", dir.path())
                    .args(["--engine", "cpu", "--style"])
                    .arg(common::image("starry_night.jpg"))
                    .arg("--weights")
                    .arg(common::real_weights())
                    .args(*flags)
                    .args(["--size", "96", "--steps", "40"]);
            };
            let single = dir.path().join(format!("{name}{k}-single"));
            std::fs::create_dir_all(&single).unwrap();
            for t in 0..content.len() {
                let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
                c.arg("stylize");
                common(&mut c);
                c.arg("--content").arg(input.join(format!("f{t:02}.png")));
                c.arg("--output").arg(single.join(format!("f{t:02}.png")));
                assert!(run(c).status.success());
            }
            let video = dir.path().join(format!("{name}{k}-video"));
            let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
            c.arg("video");
            common(&mut c);
            c.arg("--content").arg(&input).arg("--output").arg(&video);
            assert!(run(c).status.success());
            let (single, video) = (read_frames(&single, FRAMES), read_frames(&video, FRAMES));
            let e = warping_errors(&content, &[&single, &video]);
            let (e0, e1) = (e[0], e[1]);
            let (s0, s1) = (
                stylisation(&content, &single),
                stylisation(&content, &video),
            );
            println!(
                "{name}, settings {k}: warping error {e1:.4} against {e0:.4} frame by frame ({:.2}), stylisation {s1:.4} against {s0:.4}",
                e1 / e0
            );
            assert!(e1 <= 0.5 * e0, "{name} {k}: {e1} vs {e0}");
            assert!(s1 >= 0.5 * s0, "{name} {k}: {s1} vs {s0}");
        }
    }
}

/// `--passes 2 --long-term 2`: every frame twice, the second pass backward, each frame after
/// the first of a pass with its temporal term; the passes' frames removed at the end; a rerun
/// keeps the last pass's frames without redoing the first.
#[test]
fn passes_and_long_term_consistency_run_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    write_frames(&dir.path().join("in"));
    let go = || {
        let flags = ["--passes", "2", "--long-term", "2"];
        let (ok, report) = video_of_frames(dir.path(), "cpu", &flags, "out");
        assert!(ok);
        report["frames"].as_array().unwrap().clone()
    };
    let r = go();
    let field = |r: &[serde_json::Value], k: &str| -> Vec<String> {
        r.iter().map(|f| f[k].to_string()).collect()
    };
    assert_eq!(field(&r, "pass"), ["1", "1", "1", "1", "2", "2", "2", "2"]);
    assert_eq!(field(&r, "frame"), ["0", "1", "2", "3", "3", "2", "1", "0"]);
    for (i, f) in r.iter().enumerate() {
        let first = i % 4 == 0;
        assert_eq!(f["temporal_lambda"].as_f64().unwrap() > 0.0, !first, "{f}");
    }
    assert!(!dir.path().join("out.passes").exists());
    for k in 0..4 {
        assert!(out.join(format!("shot_{k:02}.png")).is_file());
    }
    let again = go();
    assert_eq!(field(&again, "status"), [r#""kept""#; 4]);
}

/// The relative temporal weight on the GPU engine and in tiles: each frame after the first
/// has its λ and a temporal term, on both engines, whole and tiled (a frame's start is
/// evaluated by the same engine and tiles as its steps).
#[test]
fn the_temporal_term_runs_on_the_gpu_and_in_tiles() {
    let dir = tempfile::tempdir().unwrap();
    write_frames(&dir.path().join("in"));
    for (k, (engine, flags)) in [("gpu", &[][..]), ("cpu", &["--tile", "16"])]
        .iter()
        .enumerate()
    {
        let (ok, r) = video_of_frames(dir.path(), engine, flags, &format!("out{k}"));
        assert!(ok, "{engine} {flags:?}");
        for (i, f) in r["frames"].as_array().unwrap().iter().enumerate() {
            let lambda = f["temporal_lambda"].as_f64().unwrap();
            assert_eq!(lambda > 0.0, i > 0, "{engine} {flags:?}: {f}");
            let temporal = f["temporal"].as_f64().unwrap();
            assert_eq!(temporal > 0.0, i > 0, "{engine} {flags:?}: {f}");
        }
    }
}
