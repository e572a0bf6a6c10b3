//! The settings every front end takes — the command's flags (clap), the Python package's
//! keyword arguments, the app's settings JSON — declared once with their checks and help
//! (`args.rs`: `JobOptions`), parsed by one parser from (name, value) pairs (`pairs.rs`), and
//! made into the library's job as `impasto stylize` makes it (`job.rs`).

mod args;
mod job;
mod pairs;
mod presets;

pub use args::{
    bit_depth, flag_name, non_negative_f64, parse_bytes, parse_f64, positive_f64, positive_usize,
    unit_f64, FlagError, JobOptions, LayerArgs, TilingChoice,
};
pub use job::{assemble, losses_of, plan_json, settings_of, take_tiles};
pub use pairs::{apply, defaults, described, json_pairs, names, COMMAND_OUTPUTS, ENGINE_WIDE};
pub use presets::{expand_args, expand_pairs};
