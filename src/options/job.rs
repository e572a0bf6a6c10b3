//! Options made into the library's job, as every front end runs one: its settings and losses,
//! the job from its images, tiles taken when it does not fit whole, its memory plan.

use std::path::Path;

use anyhow::{Context, Result};

use super::args::{FlagError, JobOptions};
use crate::job::{
    open_image, Error, Init, Job, Losses, Original, Planned, Settings, StyleMask, Stylizer,
};
use crate::model::AdamConfig;

/// The job's settings from the options.
pub fn settings_of(o: &JobOptions) -> Settings {
    Settings {
        size: o.size,
        // (A report ends with the result's score.)
        score: o.report.is_some(),
        min_size: o.min_size,
        initial_steps: o.initial_steps,
        steps: o.steps,
        style_scale: o.style_scale,
        optimizer: o.optimizer,
        history: o.history,
        average: o.average,
        adam: AdamConfig {
            lr: o.lr,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
        },
        preserve_colors: o.preserve_colors,
        log_every: o.log_every,
        tile: o.tile,
    }
}

/// The loss settings from the options.
pub fn losses_of(o: &JobOptions) -> Losses {
    Losses {
        content_layers: o.layers.content_layers.clone(),
        style_layers: o.layers.style_layers.clone(),
        content_weight: o.content_weight,
        style_weight: o.style_weight(),
        tv_weight: o.tv_weight,
        pooling: o.pooling,
        seamless: o.seamless,
        style_layer_weights: o.style_layer_weights.clone().unwrap_or_default(),
        style_loss: o.style_loss,
    }
}

/// The job from images already read (by `stylize` from files, by Python from arrays too,
/// by the app from uploads): the styles with `--style-blend`'s weights (a count that differs
/// is refused, naming the flag), the masks, the `--init` start and the settings.
pub fn assemble(
    o: &JobOptions, content: Original, styles: Vec<Original>, style_masks: Option<Vec<StyleMask>>,
) -> Result<Job> {
    let blend = o.style_blend.clone().unwrap_or(vec![1.0; styles.len()]);
    if blend.len() != styles.len() {
        return Err(FlagError(format!(
            "--style-blend has {} weights for {} style images",
            blend.len(),
            styles.len()
        ))
        .into());
    }
    let init = match o.init.as_str() {
        "content" => Init::Content,
        "noise" => Init::Noise(o.seed),
        path => Init::Image(open_image(Path::new(path)).context("--init")?),
    };
    Ok(Job {
        content,
        styles: styles.into_iter().zip(blend).collect(),
        style_masks,
        temporal: None,
        init,
        settings: settings_of(o),
    })
}

/// Tiles for `job` when its plan does not fit whole and no `--tile` was given, said; the tile
/// plan said. Returns the report's settings for them (`tile`, `tiles`).
pub fn take_tiles(
    stylizer: &Stylizer, job: &mut Job,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut settings = serde_json::Map::new();
    if let Some(tile) = stylizer.fitting_tile(job) {
        crate::say!("the run does not fit whole: in tiles of {tile} px instead (--tile {tile})");
        job.settings.tile = Some(tile);
        settings.insert("tile".into(), tile.into());
    }
    if let Some(plan) = stylizer.tile_plan(job)? {
        let (h, w) = plan.size;
        crate::say!(
            "tiled evaluation: {} tiles of {} px, halo {} px, at {w}x{h}",
            plan.tiles.len(),
            plan.tile,
            plan.halo
        );
        let tiles = serde_json::json!({
            "tile": plan.tile, "halo": plan.halo, "count": plan.tiles.len()
        });
        settings.insert("tiles".into(), tiles);
    }
    Ok(settings)
}

/// The memory plan of `job`'s largest scale as the report gives it (`fits`, `peak_bytes`, the
/// plan by kind, ...; `error` when it cannot be held, `largest_fitting_size` when it does not
/// fit, `tile` when it runs in tiles). `seen` gets the plan (or why there is none) and, when it
/// does not fit, the largest size that does: `--dry-run` prints them.
pub fn plan_json(
    stylizer: &Stylizer, job: &Job,
    seen: impl FnOnce(Result<&Planned, &Error>, Option<Option<usize>>),
) -> serde_json::Value {
    let planned = stylizer.plan(job, job.settings.size);
    let mut json = match &planned {
        Ok(p) => serde_json::json!({
            "fits": p.fits(), "peak_bytes": p.plan.peak(),
            "peak_gpu_memory_bytes": p.allocator_peak, "available_bytes": p.available,
            "held_bytes": p.plan.held(), "setup_only_bytes": p.plan.setup_only,
            "finish_only_bytes": p.plan.finish_only, "session_peak_bytes": p.plan.session_peak(),
            "plan": p.plan.kinds,
        }),
        Err(e) => serde_json::json!({ "fits": false, "error": format!("{e}") }),
    };
    json["tile"] = job.settings.tile.into();
    let largest = (json["fits"] != true).then(|| stylizer.largest_fitting(job));
    if let Some(l) = largest {
        json["largest_fitting_size"] = serde_json::json!(l);
    }
    seen(planned.as_ref(), largest);
    json
}
