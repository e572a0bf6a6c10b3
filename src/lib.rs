//! impasto: neural style transfer (Gatys, Ecker & Bethge) whose numerical core is WGSL
//! compute shaders run through wgpu, with a CPU engine for machines without a GPU.
//!
//! The job is a library ([`job`]) that the `impasto` command drives: make an [`job::Engine`]
//! once, a [`job::Stylizer`] with the weights and the loss settings, then run
//! [`job::Job`]s. The whole job, on the CPU engine with the shipped weights (VGG19's blocks
//! 1-3), at 48 px for a few steps:
//!
//! ```
//! use std::path::Path;
//! use impasto::job::{Ending, Engine, Job, Losses, Quiet, Stylizer};
//! use impasto::weights::Weights;
//!
//! let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
//! let weights = Weights::load(&repo.join("weights/vgg19-keras-block1-3.safetensors"))?;
//! let mut stylizer = Stylizer::new(Engine::cpu(), weights, &Losses::shallow())?;
//!
//! let content = repo.join("docs/images/tubingen.jpg");
//! let style = repo.join("docs/images/starry_night.jpg");
//! let mut job = Job::open(&content, &[&style])?;
//! job.settings.size = 48;
//! job.settings.steps = 5;
//!
//! let outcome = stylizer.run(&job, &mut Quiet)?;
//! assert_eq!(outcome.ending, Ending::Completed);
//! assert_eq!((outcome.image.w, outcome.image.h), (48, 36));
//!
//! let out = tempfile::tempdir()?;
//! job.save(&outcome.image, &out.path().join("tubingen_starry.png"), 8)?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```
//!
//! The folders, from the bottom up: `model` (what is computed, independent of where),
//! `reference` (the f64 CPU reference the engines are tested against), `gpu` and `kernels`
//! (wgpu, and the WGSL kernels beside their launchers), `pipeline` (the GPU session), `cpu`
//! (the CPU engine), `weights` and `io` (files), `job` (the library API), `preview`, `video`
//! (frames, optical flow, warping), `options` (the settings every front end takes, and their
//! one parser), `serve` (the app: a web server over the library), and `cli` (flags in,
//! printing out). `docs/architecture.md` has the rules.

pub mod cli;
pub mod cpu;
pub mod gpu;
pub mod io;
pub mod job;
pub mod kernels;
pub mod model;
pub mod options;
pub mod pipeline;
pub mod preview;
pub mod reference;
pub mod serve;
pub mod video;
pub mod weights;
