//! Frames of a known motion over a still picture (`video::motion`), written as PNGs: the
//! sequences of docs/video.md's flicker tables (benches/video_flicker.sh).
//!
//! cargo run --release --example moving_frames -- PICTURE OUT_DIR WIDTH HEIGHT COUNT DX DY DEGREES ZOOM

use std::path::Path;

use impasto::video::motion::{frames, Motion};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> f32 { a[i].parse().expect("a number") };
    let (w, h, count) = (num(3) as usize, num(4) as usize, num(5) as usize);
    // The picture at twice the frames' size, with half as much again for the motion.
    let picture = impasto::io::image::load(Path::new(&a[1]), Some(3 * w.max(h))).unwrap();
    let m = Motion {
        shift: (num(6), num(7)),
        degrees: num(8),
        zoom: num(9),
    };
    let out = Path::new(&a[2]);
    std::fs::create_dir_all(out).unwrap();
    for (t, f) in frames(&picture, (w, h), m, count).iter().enumerate() {
        let enc = impasto::io::image::Encoding {
            bit_depth: 8,
            icc: None,
        };
        impasto::io::image::save(f, &out.join(format!("f{t:02}.png")), &enc).unwrap();
    }
}
