//! `impasto score`: a picture's content and style scores ([`crate::job::Score`]), as JSON on
//! standard output.

use anyhow::Result;

use super::flags::{FlagError, ScoreArgs};
use crate::job::{load_weights, open_image, Engine, Job, Losses, Stylizer};

pub fn run(args: &ScoreArgs) -> Result<i32> {
    // The images first: a missing file is named before the weights' work.
    let picture = open_image(&args.image)?;
    let content = open_image(&args.content)?;
    let styles: Vec<_> = args
        .style
        .iter()
        .map(|p| open_image(p))
        .collect::<Result<_, _>>()?;
    let blend = args.style_blend.clone().unwrap_or(vec![1.0; styles.len()]);
    if blend.len() != styles.len() {
        return Err(FlagError(format!(
            "--style-blend has {} weights for {} --style images",
            blend.len(),
            styles.len()
        ))
        .into());
    }
    let weights_path = crate::weights::cache::resolve_path(args.weights.as_deref())?;
    let weights = load_weights(weights_path.as_deref())?;
    let losses = Losses {
        content_layers: args.layers.content_layers.clone(),
        style_layers: args.layers.style_layers.clone(),
        pooling: args.pooling,
        ..Losses::default()
    };
    let stylizer = Stylizer::new(Engine::cpu(), weights, &losses)?;
    let picture = picture.exactly(picture.rgb.width() as usize, picture.rgb.height() as usize);
    let mut job = Job::new(content, styles.into_iter().zip(blend).collect());
    job.settings.style_scale = args.style_scale;
    job.settings.tile = args.tile;
    let score = stylizer.score(&picture, &job)?;
    println!("{}", serde_json::to_string_pretty(&score)?);
    Ok(0)
}
