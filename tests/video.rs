//! Video: the temporal term against the f64 reference on both engines (the flow, warping and
//! consistency weights are tests/flow.rs's), and `impasto video` runs (a directory of frames
//! in and out, resumed; a video file in and out through ffmpeg; bad input refused).

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
    let mut c = video_command_steps(dir);
    c.args(["--frame-steps", "2"]);
    c
}

/// The same without `--frame-steps`.
fn video_command_steps(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.env("XDG_RUNTIME_DIR", dir)
        .args(["video", "--engine", "cpu", "--style"])
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

/// A directory of frames in and out: one PNG per frame with the input's names, the report's
/// entries; a rerun keeps them all; removing one redoes that one only.
#[test]
fn a_directory_of_frames_is_stylized_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (frames, out, rep) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("r.json"),
    );
    write_frames(&frames);
    let go = || {
        let mut c = video_command(dir.path());
        c.arg("--content")
            .arg(&frames)
            .arg("-o")
            .arg(&out)
            .arg("--report")
            .arg(&rep);
        let o = run(c);
        assert!(o.status.success());
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&rep).unwrap()).unwrap()
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
    let mut c = video_command_steps(dir.path());
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
