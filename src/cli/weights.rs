//! `impasto weights info | import | sources | fetch`.

use super::flags::{FlagError, WeightsCommand};

/// Runs one `impasto weights` subcommand.
pub fn run(command: &WeightsCommand) -> anyhow::Result<()> {
    match command {
        WeightsCommand::Info { path } => info(path),
        WeightsCommand::Import { path, output } => import(path, output.as_deref()),
        WeightsCommand::Fetch {
            source,
            url,
            sha256,
            size,
            output,
            timeout,
        } => fetch_request(source.as_deref(), url, sha256.as_deref(), *size)
            .and_then(|d| fetch(&d, output.as_deref(), *timeout)),
        WeightsCommand::Sources => sources(),
    }
}

/// The output path for imported weights: `-o`, or the cache file `stylize` looks for.
fn destination(output: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    Ok(match output {
        Some(o) => o.to_path_buf(),
        None => {
            let out = crate::weights::cache::default_path()
                .ok_or_else(|| anyhow::anyhow!("no cache directory (HOME unset); pass -o"))?;
            std::fs::create_dir_all(crate::io::atomic::parent_dir(&out))?;
            out
        }
    })
}

/// What to download: a known source, or URLs with their sha256.
fn fetch_request(
    source: Option<&str>, urls: &[String], sha256: Option<&str>, size: Option<u64>,
) -> anyhow::Result<crate::weights::fetch::Download> {
    use crate::weights::fetch::{default_source, find_source, Checksum, Download};
    match source {
        Some(name) => find_source(name)
            .and_then(|s| s.download())
            .context_flag("--source"),
        None if urls.is_empty() => default_source()?.download(),
        None => Ok(Download {
            urls: urls.to_vec(),
            size,
            checksum: Checksum::Sha256(sha256.unwrap_or_default().to_string()),
        }),
    }
}

trait ContextFlag<T> {
    fn context_flag(self, flag: &str) -> anyhow::Result<T>;
}

impl<T> ContextFlag<T> for anyhow::Result<T> {
    fn context_flag(self, flag: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{flag}: {e:#}"))
    }
}

fn fetch(
    d: &crate::weights::fetch::Download, output: Option<&std::path::Path>, timeout: u64,
) -> anyhow::Result<()> {
    let out = destination(output)?;
    crate::io::atomic::check_parent_dir(&out, "-o")?;
    // The one file fetch reads: a manifest given in the environment.
    if let Some(m) = std::env::var_os(crate::weights::fetch::SOURCES_ENV).filter(|s| !s.is_empty())
    {
        let manifest = std::path::PathBuf::from(m);
        refuse_overwrite(&out, output, crate::weights::fetch::SOURCES_ENV, &manifest)?;
    }
    crate::weights::cache::fetch_weights(d, &out, std::time::Duration::from_secs(timeout))?;
    Ok(())
}

fn sources() -> anyhow::Result<()> {
    for s in crate::weights::fetch::sources()? {
        println!("{}: {}", s.name, s.description);
        let size = s.size.map(|b| format!("{b} bytes, ")).unwrap_or_default();
        println!(
            "   {} ({}, input convention {}, {}), {size}checksum {}",
            s.file, s.format, s.input_convention, s.license, s.checksum
        );
    }
    Ok(())
}

fn import(path: &std::path::Path, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let out = destination(output)?;
    refuse_overwrite(&out, output, "PATH", path)?;
    let w = crate::weights::Weights::load(path)?;
    w.save_canonical(&out)?;
    crate::say!(
        "wrote {} ({} layers, input convention {})",
        out.display(),
        w.layers.len(),
        w.convention.name()
    );
    Ok(())
}

fn info(path: &std::path::Path) -> anyhow::Result<()> {
    let w = crate::weights::Weights::load(path)?;
    println!(
        "{}: input convention {}",
        path.display(),
        w.convention.name()
    );
    for (name, l) in &w.layers {
        println!(
            "  {name:14} kernel [3, 3, {}, {}]  bias [{}]",
            l.cin, l.cout, l.cout
        );
    }
    Ok(())
}

/// Refuses (exit 2) an output that is the same file as the input named by `flag`.
fn refuse_overwrite(
    out: &std::path::Path, given: Option<&std::path::Path>, flag: &str, input: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::io::same_file::{check_distinct, Named};
    let out_flag = if given.is_some() {
        "-o"
    } else {
        "-o (default: the cache file)"
    };
    let inputs = [Named {
        flag: flag.to_string(),
        path: input,
    }];
    let outputs = [Named {
        flag: out_flag.to_string(),
        path: out,
    }];
    check_distinct(&inputs, &outputs).map_err(|e| FlagError(e).into())
}
