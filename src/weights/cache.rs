//! Where weights live when no path is given (the user cache), and getting them there:
//! a download of a manifest source, verified and converted to canonical form.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{fetch, Weights};

/// Environment variable naming the weights file, like `--weights`.
pub const WEIGHTS_ENV: &str = "IMPASTO_WEIGHTS";

/// Where the weights live by default: `$XDG_CACHE_HOME/impasto` or `~/.cache/impasto`.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("impasto"))
}

pub const DEFAULT_FILE: &str = "vgg19.safetensors";

/// The weights file to use: `--weights`, then `$IMPASTO_WEIGHTS`, then the cache file if it
/// exists (`Ok(None)` when it does not: the caller may fetch it).
pub fn resolve_path(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = flag {
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os(WEIGHTS_ENV).filter(|s| !s.is_empty()) {
        return Ok(Some(PathBuf::from(p)));
    }
    Ok(default_path().filter(|p| p.exists()))
}

/// The cache file `stylize` reads and `weights fetch` / `weights import` write by default.
pub fn default_path() -> Option<PathBuf> {
    cache_dir().map(|d| d.join(DEFAULT_FILE))
}

/// Fetches the default source into the cache (a first run without weights).
pub fn fetch_default() -> Result<Weights> {
    let help = format!(
        "impasto needs VGG19 weights: when online run `impasto weights fetch`, or pass --weights PATH / set {WEIGHTS_ENV} \
         (safetensors with Keras names such as block1_conv1/kernel or torchvision names features.N.weight, a Keras .h5 or a torchvision .pth)"
    );
    let out = default_path().with_context(|| format!("no cache directory (HOME unset); {help}"))?;
    let run = || -> Result<Weights> {
        std::fs::create_dir_all(crate::io::atomic::parent_dir(&out))?;
        let source = fetch::default_source()?;
        crate::say!(
            "no VGG19 weights given and none in the cache: fetching the default ({}, {}) into {} (once)",
            source.name, source.description, out.display()
        );
        fetch_weights(
            &source.download()?,
            &out,
            std::time::Duration::from_secs(30),
        )
    };
    run().map_err(|e| anyhow::anyhow!("{e:#}\n{help}"))
}

/// Downloads `d`, verifies it, converts it to canonical safetensors at `out` and returns the
/// weights. Progress goes to stderr. The raw download waits beside `out` (resumable) and is
/// removed once converted; nothing is left at `out` unless everything succeeded.
pub fn fetch_weights(d: &fetch::Download, out: &Path, timeout: Duration) -> Result<Weights> {
    use std::io::IsTerminal;
    // Beside the output under a name no output can have (it only ever gets longer).
    let mut raw = out.as_os_str().to_owned();
    raw.push(".download");
    let raw = PathBuf::from(raw);
    let bar = indicatif::ProgressBar::new(d.size.unwrap_or(0));
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    let b = bar.clone();
    let opts = fetch::Options {
        read_timeout: timeout,
        retries: 3,
        progress: Box::new(move |done, total| {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }),
    };
    crate::say!(
        "downloading {}",
        d.urls.first().map(String::as_str).unwrap_or("(no URL)")
    );
    let result = fetch::download(d, &raw, opts);
    bar.finish_and_clear();
    result?;
    // Recorded for whoever pins the manifest (Keras publishes only an MD5).
    crate::say!("sha256 of the download: {}", fetch::sha256_file(&raw)?);
    let converted = Weights::load(&raw).and_then(|w| {
        w.save_canonical(out)?;
        Ok(w)
    });
    let _ = std::fs::remove_file(&raw);
    let mut w = converted?;
    w.path = out.to_path_buf();
    crate::say!(
        "verified the checksum and wrote {} ({} layers, input convention {})",
        out.display(),
        w.layers.len(),
        w.convention.name()
    );
    Ok(w)
}
