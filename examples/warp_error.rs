//! The temporal warping error of a stylised sequence (`video::warp::warping_errors`: the mean
//! |o_t − warp(o_{t−1})| over the pixels whose flow is consistent, the flow computed on the
//! content frames as `impasto video` does), then how stylised it is (the mean |o_t − c_t|).
//! Lower warping error is steadier; docs/video.md.
//!
//! cargo run --release --example warp_error -- CONTENT_FRAMES_DIR RESULT_FRAMES_DIR

use std::path::{Path, PathBuf};

use impasto::model::Image;
use impasto::video::warp::{stylisation, warping_errors};

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
    let first = impasto::io::image::load_original(&results[0]).unwrap();
    let hw = (first.rgb.height() as usize, first.rgb.width() as usize);
    let content: Vec<Image> = content.iter().map(|p| load(p, hw)).collect();
    let results: Vec<Image> = results.iter().map(|p| load(p, hw)).collect();
    let e = warping_errors(&content, &[&results])[0];
    println!("{e:.5} {:.5}", stylisation(&content, &results));
}
