use clap::Parser;
use impasto::cli::{Cli, Command, WeightsCommand};

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Stylize(args) => impasto::cli::stylize::run(args, cli.adapter.as_deref()),
        Command::Devices => devices().map(|_| 0),
        Command::Bench(args) => bench(args, cli.adapter.as_deref()).map(|_| 0),
        Command::Weights { command } => match command {
            WeightsCommand::Info { path } => weights_info(path).map(|_| 0),
            WeightsCommand::Import { path, output } => {
                weights_import(path, output.as_deref()).map(|_| 0)
            }
            WeightsCommand::Fetch {
                source,
                url,
                sha256,
                size,
                output,
                timeout,
            } => fetch_request(source.as_deref(), url, sha256.as_deref(), *size)
                .and_then(|d| weights_fetch(&d, output.as_deref(), *timeout).map(|_| 0)),
            WeightsCommand::Sources => weights_sources().map(|_| 0),
        },
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn devices() -> anyhow::Result<()> {
    let adapters = impasto::gpu::list_adapters();
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found; install a Vulkan driver (on a machine without a GPU: `apt-get install mesa-vulkan-drivers`)");
    }
    for (i, a) in adapters.iter().enumerate() {
        println!(
            "{i}: {} ({:?}, {:?}){}",
            a.info.name,
            a.info.backend,
            a.info.device_type,
            if i == 0 { "  [default]" } else { "" }
        );
        println!(
            "   max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, invocations/workgroup {}, timestamps {}",
            a.limits.max_storage_buffer_binding_size >> 20,
            a.limits.max_buffer_size >> 20,
            a.limits.max_compute_workgroup_storage_size >> 10,
            a.limits.max_compute_invocations_per_workgroup,
            if a.features.contains(wgpu::Features::TIMESTAMP_QUERY) { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn bench(args: &impasto::cli::BenchArgs, adapter: Option<&str>) -> anyhow::Result<()> {
    let gpu = impasto::gpu::Gpu::new(adapter)?;
    let cfg = impasto::cli::bench::BenchConfig {
        size: args.size,
        content_layers: args.layers.content_layers.clone(),
        style_layers: args.layers.style_layers.clone(),
        steps: args.steps,
        tiling: args.tiling,
        storage: args.storage,
    };
    let t = impasto::cli::bench::run(&gpu, &cfg)?;
    impasto::cli::bench::print_table(&cfg, &gpu, &t);
    Ok(())
}

/// The output path for imported weights: `-o`, or the cache file `stylize` looks for.
fn weights_destination(output: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    Ok(match output {
        Some(o) => o.to_path_buf(),
        None => {
            let out = impasto::weights::default_path()
                .ok_or_else(|| anyhow::anyhow!("no cache directory (HOME unset); pass -o"))?;
            std::fs::create_dir_all(impasto::io::atomic::parent_dir(&out))?;
            out
        }
    })
}

/// What to download: a known source, or URLs with their sha256.
fn fetch_request(
    source: Option<&str>,
    urls: &[String],
    sha256: Option<&str>,
    size: Option<u64>,
) -> anyhow::Result<impasto::weights::fetch::Download> {
    use impasto::weights::fetch::{default_source, find_source, Checksum, Download};
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

fn weights_fetch(
    d: &impasto::weights::fetch::Download,
    output: Option<&std::path::Path>,
    timeout: u64,
) -> anyhow::Result<()> {
    let out = weights_destination(output)?;
    impasto::io::atomic::check_parent_dir(&out, "-o")?;
    impasto::weights::fetch::fetch_weights(d, &out, std::time::Duration::from_secs(timeout))?;
    Ok(())
}

fn weights_sources() -> anyhow::Result<()> {
    for s in impasto::weights::fetch::sources()? {
        println!("{}: {}", s.name, s.description);
        let size = s.size.map(|b| format!("{b} bytes, ")).unwrap_or_default();
        println!(
            "   {} ({}, input convention {}, {}), {size}checksum {}",
            s.file, s.format, s.input_convention, s.license, s.checksum
        );
    }
    Ok(())
}

fn weights_import(path: &std::path::Path, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let w = impasto::weights::Weights::load(path)?;
    let out = weights_destination(output)?;
    w.save_canonical(&out)?;
    eprintln!(
        "wrote {} ({} layers, input convention {})",
        out.display(),
        w.layers.len(),
        w.convention.name()
    );
    Ok(())
}

fn weights_info(path: &std::path::Path) -> anyhow::Result<()> {
    let w = impasto::weights::Weights::load(path)?;
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
