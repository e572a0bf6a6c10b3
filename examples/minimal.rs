//! The whole job through the library: `cargo run --release --example minimal -- CONTENT STYLE OUTPUT`
//! (the shipped block1-3 weights, their shallow layers, the CPU engine or a hardware GPU).

use std::path::Path;

use impasto::job::{Engine, EngineChoice, Job, Losses, Stylizer};
use impasto::kernels::Storage;
use impasto::weights::Weights;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [content, style, output] = &args[..] else {
        return Err("usage: minimal CONTENT STYLE OUTPUT".into());
    };
    let weights = Weights::load(Path::new("weights/vgg19-keras-block1-3.safetensors"))?;
    let (engine, why) = Engine::choose(EngineChoice::Auto, None, Storage::F32)?;
    eprintln!("{why}");
    let mut stylizer = Stylizer::new(engine, weights, &Losses::shallow())?;
    let mut job = Job::open(Path::new(content), &[Path::new(style)])?;
    job.settings.size = 256;
    job.settings.steps = 150;
    let outcome = stylizer.run(&job, &mut impasto::job::Quiet)?;
    job.save(&outcome.image, Path::new(output), 8)?;
    eprintln!(
        "wrote {output}: total loss {:.4e}",
        outcome.entries.last().unwrap().losses.total
    );
    Ok(())
}
