//! The command-line interface: `flags.rs` declares the flags, one file per command turns
//! them into the library's terms (`crate::job`) and prints what comes back.

pub mod batch;
pub mod bench;
pub mod devices;
pub mod flags;
pub mod inputs;
pub mod manifest;
pub mod observers;
pub mod plan;
pub mod score;
pub mod serve;
pub mod shaders;
pub mod stylize;
pub mod tune;
pub mod video;
pub mod weights;

pub use flags::{Cli, Command, FlagError};

/// Runs a parsed command line; returns the process's exit status (errors are printed): 2 for
/// a [`FlagError`], 1 for any other failure.
pub fn run(cli: &Cli) -> i32 {
    let adapter = cli.adapter.as_deref();
    let result = match &cli.command {
        Command::Stylize(args) => stylize::run(args, adapter),
        Command::Batch(args) => batch::run(args, adapter),
        Command::Video(args) => video::run(args, adapter),
        Command::Serve(args) => serve::run(args, adapter),
        Command::Score(args) => score::run(args),
        Command::Devices => devices::run().map(|_| 0),
        Command::Bench(args) => bench::command(args, adapter).map(|_| 0),
        Command::Tune(args) => tune::run(args, adapter).map(|_| 0),
        Command::Shaders(args) => shaders::run(args, adapter).map(|_| 0),
        Command::Weights { command } => weights::run(command).map(|_| 0),
    };
    let status = result.unwrap_or_else(|e| {
        crate::say!("error: {e:#}");
        match e.downcast_ref::<crate::job::Error>() {
            Some(typed) => typed.exit_status(),
            None if e.downcast_ref::<FlagError>().is_some() => 2,
            None => 1,
        }
    });
    // Under IMPASTO_VALIDATE=1, any error or warning the validation reported fails the run.
    let reported = crate::gpu::validation::messages();
    if reported > 0 && status == 0 {
        crate::say!("error: the validation layer reported {reported} errors or warnings (above)");
        return 1;
    }
    status
}
