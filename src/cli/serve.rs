//! `impasto serve`: the flags made into the server's configuration (its data directory, its
//! token, the engine made once, the jobs' defaults); the server itself is `crate::serve`.

use std::path::PathBuf;

use anyhow::Result;

use super::flags::{FlagError, ServeArgs};
use crate::serve::{Config, Limits};

/// `$XDG_DATA_HOME/impasto/serve`, else `~/.local/share/impasto/serve`.
fn default_data() -> Option<PathBuf> {
    let var = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let base = var("XDG_DATA_HOME").or_else(|| var("HOME").map(|h| h.join(".local/share")))?;
    Some(base.join("impasto").join("serve"))
}

/// Runs the server until Ctrl-C.
pub fn run(args: &ServeArgs, adapter: Option<&str>) -> Result<i32> {
    let o = &args.options;
    for (set, flag) in [
        (o.report.is_some(), "--report"),
        (o.plot.is_some(), "--plot"),
        (o.preview.is_some(), "--preview"),
        (o.save_every.is_some(), "--save-every"),
        (o.dry_run, "--dry-run"),
    ] {
        if set {
            return Err(FlagError(format!(
                "{flag} is not for impasto serve: the page shows each job"
            ))
            .into());
        }
    }
    let data = (args.data.clone().or_else(default_data)).ok_or_else(|| {
        FlagError("--data: no default (neither XDG_DATA_HOME nor HOME is set)".into())
    })?;
    let token = match (&args.token, args.listen.ip().is_loopback()) {
        (Some(t), _) if t.trim().is_empty() => {
            return Err(FlagError("--token: empty".into()).into())
        }
        (Some(t), _) => Some(t.clone()),
        (None, true) => None,
        (None, false) => {
            crate::say!(
                "--listen {}: not a loopback address, so every request needs a token; generated one (give --token to choose it)",
                args.listen
            );
            Some(format!("{:032x}", rand::random::<u128>()))
        }
    };
    let (engine, why) = super::tune::engine(o, adapter)?;
    if !why.is_empty() {
        crate::say!("{why}");
    }
    crate::serve::run(Config {
        listen: args.listen,
        data,
        token,
        engine,
        weights: o.weights.clone(),
        defaults: o.clone(),
        limits: Limits {
            file_bytes: args.max_upload as usize,
            queue: args.queue,
        },
    })?;
    Ok(0)
}
