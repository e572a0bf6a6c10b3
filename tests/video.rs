//! Video: the temporal term against the f64 reference on both engines, warping against known
//! translations, the consistency weights on a synthetic occlusion, the optical flow's
//! end-point error on known flows, and `impasto video` runs (a directory of frames in and out,
//! resumed; a video file in and out through ffmpeg; bad input refused).

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
use impasto::video::flow::{flow, Flow, FlowSettings, Plane};
use impasto::video::warp::{consistency, warp};
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

/// A constant flow of (dx, dy).
fn constant(h: usize, w: usize, (dx, dy): (f32, f32)) -> Flow {
    let mut f = Flow::zero(h, w);
    f.u.fill(dx);
    f.v.fill(dy);
    f
}

/// Warping by an integer translation moves pixels exactly; by half a pixel it gives the
/// Catmull-Rom midpoint of the four neighbours.
#[test]
fn warping_follows_known_translations() {
    let img = load("tubingen.jpg", 40);
    let (h, w) = (img.h, img.w);
    let hw = h * w;
    let moved = warp(&img, &constant(h, w, (3.0, -2.0)));
    for c in 0..3 {
        for y in 2..h {
            for x in 0..w - 3 {
                let p = y * w + x;
                assert_eq!(
                    moved.data[c * hw + p],
                    img.data[c * hw + (y - 2) * w + x + 3]
                );
            }
        }
    }
    let half = warp(&img, &constant(h, w, (0.5, 0.0)));
    for p in (0..hw).filter(|p| p % w > 0 && p % w < w - 2) {
        let d = &img.data;
        let want = (9.0 * (d[p] + d[p + 1]) - d[p - 1] - d[p + 2]) / 16.0;
        assert!((half.data[p] - want.clamp(0.0, 1.0)).abs() < 1e-6);
    }
}

/// A square moving right over a still background: the pixels it uncovers have no consistent
/// flow back, so their weight is 0; the background far from it keeps 1.
#[test]
fn the_consistency_weights_drop_occluded_pixels() {
    let (h, w) = (48, 64);
    let mut backward = Flow::zero(h, w); // frame t → t−1
    let mut forward = Flow::zero(h, w); // frame t−1 → t
    for y in 16..32 {
        for x in 20..36 {
            forward.u[y * w + x] = 6.0; // the square at x 20..36 in t−1 moves to 26..42 in t
        }
        for x in 26..42 {
            backward.u[y * w + x] = -6.0;
        }
    }
    let c = consistency(&backward, &forward);
    // Uncovered in t (x 20..26): the background's flow is 0 there, the forward flow at the
    // same place says 6: inconsistent.
    for y in 17..31 {
        for x in 20..25 {
            assert_eq!(c[y * w + x], 0.0, "uncovered ({x}, {y})");
        }
        // Inside the square, away from its edges: consistent.
        for x in 29..39 {
            assert_eq!(c[y * w + x], 1.0, "square ({x}, {y})");
        }
    }
    for p in (0..w * 10).chain(w * 40..w * h) {
        assert_eq!(c[p], 1.0, "background {p}");
    }
    // The square's moving edges are motion boundaries.
    assert_eq!(c[24 * w + 26], 0.0);
    assert_eq!(c[24 * w + 41], 0.0);
}

/// Two frames at half the size of `hi`, the second `hi` moved by the flow field `d` (given in
/// the frames' pixels): b(p + d(p)) = a(p). The motion is made at twice the resolution, then
/// both frames are averaged down 2x2, so that interpolation blurs both alike (a bilinear
/// shift of the frame itself would blur only the second, and bias any flow method).
fn displaced(hi: &Plane, d: &dyn Fn(f32, f32) -> (f32, f32)) -> (Plane, Plane, Flow) {
    let (h, w) = (hi.h / 2, hi.w / 2);
    let mut moved = hi.clone();
    for y in 0..hi.h {
        for x in 0..hi.w {
            // d is smooth, so p − d(p) inverts p + d(p) to well under a pixel.
            let (dx, dy) = d(x as f32 / 2.0, y as f32 / 2.0);
            moved.data[y * hi.w + x] = hi.sample(x as f32 - 2.0 * dx, y as f32 - 2.0 * dy);
        }
    }
    let down = |p: &Plane| Plane {
        h,
        w,
        data: (0..h * w)
            .map(|i| {
                let (x, y) = (2 * (i % w), 2 * (i / w));
                let at = |dx: usize, dy: usize| p.data[(y + dy) * p.w + x + dx];
                0.25 * (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1))
            })
            .collect(),
    };
    let mut f = Flow::zero(h, w);
    for y in 0..h {
        for x in 0..w {
            // The displacement of the 2x2 block's centre.
            let (dx, dy) = d(x as f32 + 0.25, y as f32 + 0.25);
            f.u[y * w + x] = dx;
            f.v[y * w + x] = dy;
        }
    }
    (down(hi), down(&moved), f)
}

/// The mean end-point error of `got` against `want` away from a margin of the border
/// (pixels moving in from outside have no answer).
fn epe(got: &Flow, want: &Flow, margin: usize) -> f64 {
    let (h, w) = (got.h, got.w);
    let mut s = 0.0;
    let mut n = 0;
    for y in margin..h - margin {
        for x in margin..w - margin {
            let p = y * w + x;
            s += (((got.u[p] - want.u[p]).powi(2) + (got.v[p] - want.v[p]).powi(2)) as f64).sqrt();
            n += 1;
        }
    }
    s / n as f64
}

/// The flow on known motions of a real picture: translations (integer and sub-pixel, small
/// and large), a rotation and a smooth warp. Mean end-point errors are printed (docs/video.md)
/// and held under bounds.
#[test]
fn the_optical_flow_recovers_known_motions() {
    let hi = Plane::luma(&load("tubingen.jpg", 256));
    let (cx, cy) = (hi.w as f32 / 4.0, hi.h as f32 / 4.0);
    let rot = 2.0f32.to_radians();
    // A name, the motion at a pixel, the bound on the mean end-point error.
    type Motion = Box<dyn Fn(f32, f32) -> (f32, f32)>;
    let cases: Vec<(&str, Motion, f64)> = vec![
        ("translation (2, 1)", Box::new(|_, _| (2.0, 1.0)), 0.05),
        (
            "translation (0.5, -0.25)",
            Box::new(|_, _| (0.5, -0.25)),
            0.12,
        ),
        ("translation (7, 3)", Box::new(|_, _| (7.0, 3.0)), 0.2),
        (
            "rotation 2° about the centre",
            Box::new(move |x, y| {
                let (dx, dy) = (x - cx, y - cy);
                (
                    dx * rot.cos() - dy * rot.sin() - dx,
                    dx * rot.sin() + dy * rot.cos() - dy,
                )
            }),
            0.2,
        ),
        (
            "smooth warp (sines, up to 2 px)",
            Box::new(move |x, y| (2.0 * (y / 30.0).sin(), 1.5 * (x / 40.0).cos())),
            0.27,
        ),
    ];
    for (name, d, bound) in cases {
        let (a, b, want) = displaced(&hi, &*d);
        let t = std::time::Instant::now();
        let got = flow(&a, &b, FlowSettings::default());
        let e = epe(&got, &want, 8);
        println!(
            "{name}: mean end-point error {e:.3} px ({}x{}, {:.2} s)",
            a.w,
            a.h,
            t.elapsed().as_secs_f64()
        );
        assert!(e < bound, "{name}: {e}");
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
