//! What a run holds in host memory besides its engine session: the pictures (as decoded, and
//! resized for the scale at hand), the weights as read, and at the end the result as it is
//! written and its encoding. The CPU engine and the software GPU adapters keep their sessions
//! in host memory too, so their memory plans add these (`Stylizer::plan`); at 8192x6144 they
//! are gigabytes, which a plan of the session alone left out.

use super::inputs::{Job, ScaleImages};
use super::settings::{Init, PreserveColors};
use crate::model::engine::MemoryPlan;
use crate::weights::Weights;

/// The program itself and what no item counts: its code and libraries, thread stacks, the
/// allocator's own, small scratch. Measured peak resident memory over the counted buffers
/// (`/usr/bin/time -v`, docs/memory.md): 12 MiB at 64-1024 px untiled, 19-26 MiB at 1024-2048
/// px in tiles, 52 MiB at 8192x6144 in tiles of 2048; this is about twice the largest.
const PROGRAM: u64 = 96 << 20;

/// Bytes of `n` f32s.
fn f32s(n: usize) -> u64 {
    4 * n as u64
}

/// The pictures held from the setup to the end of a scale: the decoded files (8-bit RGB, masks
/// in f32), the scale's content, start and style images and masks (f32), a video frame's
/// temporal target and weights, and one more image-sized copy (a logged step's image, read
/// back from the session).
pub fn pictures(job: &Job, images: &ScaleImages) -> u64 {
    let rgb = |o: &crate::io::image::Original| o.rgb.as_raw().len() as u64;
    let decoded = rgb(&job.content) + job.styles.iter().map(|s| rgb(&s.0)).sum::<u64>();
    let start = match &job.init {
        Init::Image(o) => rgb(o),
        Init::Given(img) => f32s(img.data.len()),
        Init::Content | Init::Noise(_) => 0,
    };
    let masks = (job.style_masks.iter().flatten())
        .map(|m| f32s(m.size().0 * m.size().1))
        .sum::<u64>();
    let image = images.content.data.len();
    let scale = f32s(2 * image)
        + (images.styles.iter())
            .map(|s| f32s(s.0.data.len()))
            .sum::<u64>()
        + (images.masks.iter().flatten())
            .map(|m| f32s(m.len()))
            .sum::<u64>();
    let temporal =
        (job.temporal.as_ref()).map_or(0, |t| f32s(t.target.data.len() + t.weights.len()));
    decoded + start + masks + scale + temporal + f32s(image)
}

/// The weights as read (every layer's f32s), which the stylizer keeps beside an engine's own
/// copies.
pub fn weights_read(w: &Weights) -> u64 {
    (w.layers.values())
        .map(|l| f32s(l.hwio.len() + l.bias.len()))
        .sum()
}

/// What the end holds once the session is freed, of an `(h, w)` result: the image (f32), with
/// `--preserve-colors luminance` the content at its size and the recoloured copy, and the
/// encoding's bound — 16 bits a channel (the larger): the samples, the encoder's big-endian
/// copy and the compressed stream (no larger than the samples for PNG's filters and deflate).
pub fn finish(job: &Job, (h, w): (usize, usize)) -> u64 {
    let image = f32s(3 * h * w);
    let recolour = match job.settings.preserve_colors {
        Some(PreserveColors::Luminance) => 2 * image,
        _ => 0,
    };
    let samples = 2 * 3 * (h * w) as u64;
    image + recolour + 3 * samples
}

/// `plan` with the host's share of `job`'s run at the scale of `images` added: the pictures and
/// the weights as read held throughout (so in the setup's peak too), the end's after the
/// session.
pub fn add_host(plan: &mut MemoryPlan, job: &Job, images: &ScaleImages, weights: &Weights) {
    let held = [
        ("pictures: decoded and resized", pictures(job, images)),
        ("weights as read", weights_read(weights)),
        ("the program: code, stacks, allocator", PROGRAM),
    ];
    let throughout: u64 = held.iter().map(|k| k.1).sum();
    let mut kinds = std::mem::take(&mut plan.kinds);
    kinds.extend(held.iter().map(|&(k, b)| (k.to_string(), b)));
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    plan.kinds = kinds;
    plan.from_setup += throughout;
    plan.throughout += throughout;
    plan.finish_only += finish(job, (images.content.h, images.content.w));
}
