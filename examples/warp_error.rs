//! The temporal warping error of a stylised sequence: for each pair of consecutive frames,
//! the mean |o_t − warp(o_{t−1})| over the pixels whose flow is consistent, the flow computed
//! on the content frames (as `impasto video` does). Lower is steadier; docs/video.md.
//!
//! cargo run --release --example warp_error -- CONTENT_FRAMES_DIR RESULT_FRAMES_DIR

use std::path::{Path, PathBuf};

use impasto::model::Image;
use impasto::video::flow::{flow, FlowSettings, Plane};
use impasto::video::warp::{consistency, warp};

fn frames(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a directory of frames")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect();
    f.sort();
    f
}

fn load(p: &Path, (h, w): (usize, usize)) -> Image {
    impasto::io::image::load_original(p).unwrap().exactly(w, h)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (content, results) = (frames(Path::new(&args[1])), frames(Path::new(&args[2])));
    assert_eq!(content.len(), results.len(), "as many results as frames");
    let first = impasto::io::image::load_original(&results[0]).unwrap();
    let hw = (first.rgb.height() as usize, first.rgb.width() as usize);
    let (mut total, mut pairs) = (0.0, 0);
    for t in 1..content.len() {
        let (a, b) = (load(&content[t], hw), load(&content[t - 1], hw));
        let (pa, pb) = (Plane::luma(&a), Plane::luma(&b));
        let backward = flow(&pa, &pb, FlowSettings::default());
        let forward = flow(&pb, &pa, FlowSettings::default());
        let c = consistency(&backward, &forward);
        let warped = warp(&load(&results[t - 1], hw), &backward);
        let now = load(&results[t], hw);
        let n = hw.0 * hw.1;
        let (mut s, mut k) = (0.0, 0.0);
        for (p, &cp) in c.iter().enumerate() {
            for ch in 0..3 {
                s += cp as f64 * (now.data[ch * n + p] - warped.data[ch * n + p]).abs() as f64;
            }
            k += 3.0 * cp as f64;
        }
        total += s / k;
        pairs += 1;
    }
    println!("{:.5}", total / pairs as f64);
}
