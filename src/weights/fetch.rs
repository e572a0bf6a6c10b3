//! Downloading weights: mirrors tried in order, resumable partial files, a per-read timeout
//! for stalled servers, and a size + sha256 check before the file takes its final name.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// One downloadable file: where to get it and what it must be.
#[derive(Clone, Debug)]
pub struct Download {
    pub urls: Vec<String>,
    pub size: Option<u64>,
    pub checksum: Checksum,
}

/// What a download must hash to: whatever its publisher publishes.
#[derive(Clone, Debug, PartialEq)]
pub enum Checksum {
    Sha256(String),
    /// The leading hex digits of the SHA-256 (torchvision names its files with 8 of them).
    Sha256Prefix(String),
    Md5(String),
}

impl std::str::FromStr for Checksum {
    type Err = anyhow::Error;
    /// `sha256:HEX`, `sha256-prefix:HEX` or `md5:HEX`; a bare 64-digit HEX is a SHA-256.
    fn from_str(s: &str) -> Result<Checksum> {
        let s = s.trim().to_lowercase();
        let (kind, hex) = s.split_once(':').unwrap_or(("sha256", s.as_str()));
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("checksum {s:?}: expected hexadecimal digits");
        }
        let hex = hex.to_string();
        Ok(match (kind, hex.len()) {
            ("sha256", 64) => Checksum::Sha256(hex),
            ("sha256-prefix", 1..=64) => Checksum::Sha256Prefix(hex),
            ("md5", 32) => Checksum::Md5(hex),
            _ => bail!(
                "checksum {s:?}: expected sha256:<64 hex>, sha256-prefix:<hex> or md5:<32 hex>"
            ),
        })
    }
}

pub struct Options {
    /// A read that waits longer than this fails (and the download resumes or moves on).
    pub read_timeout: Duration,
    /// Resumptions of one mirror after a broken connection before trying the next.
    pub retries: usize,
    /// Called with (bytes so far, total if known).
    pub progress: Box<dyn FnMut(u64, Option<u64>)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            read_timeout: Duration::from_secs(30),
            retries: 3,
            progress: Box::new(|_, _| {}),
        }
    }
}

/// Downloads `d` to `dest`. A partial download is kept as `dest` + `.part` and resumed
/// (HTTP Range) by the next attempt or call; `dest` itself appears only once verified.
pub fn download(d: &Download, dest: &Path, mut opts: Options) -> Result<PathBuf> {
    let part = part_path(dest);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(opts.read_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut failures = Vec::new();
    for url in &d.urls {
        let mut attempt = 0;
        loop {
            match fetch_once(&agent, url, &part, d.size, &mut opts) {
                Ok(()) => match verify(&part, d) {
                    Ok(()) => {
                        std::fs::rename(&part, dest).with_context(|| {
                            format!("cannot move the download to {}", dest.display())
                        })?;
                        return Ok(dest.to_path_buf());
                    }
                    Err(e) => {
                        // A complete but wrong file: never keep it, never resume from it.
                        let _ = std::fs::remove_file(&part);
                        failures.push(format!("{url}: {e}"));
                        break;
                    }
                },
                Err(Fetch::Fatal(e)) => {
                    failures.push(format!("{url}: {e}"));
                    break;
                }
                Err(Fetch::Broken(e)) => {
                    attempt += 1;
                    if attempt > opts.retries {
                        failures.push(format!("{url}: {e} (after {attempt} attempts)"));
                        break;
                    }
                }
            }
        }
    }
    bail!(
        "download failed from every mirror:\n  {}",
        failures.join("\n  ")
    )
}

pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

enum Fetch {
    /// The mirror cannot serve it (404, bad answer): try the next one.
    Fatal(anyhow::Error),
    /// The transfer broke off or stalled: resume.
    Broken(anyhow::Error),
}

fn fetch_once(
    agent: &ureq::Agent, url: &str, part: &Path, size: Option<u64>, opts: &mut Options,
) -> std::result::Result<(), Fetch> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if size == Some(have) {
        return Ok(());
    }
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| Fetch::Broken(anyhow!(e)))?;
    let status = resp.status().as_u16();
    let append = match status {
        200 => false,
        206 => true,
        416 if have > 0 => return Ok(()),
        _ => return Err(Fetch::Fatal(anyhow!("HTTP status {status}"))),
    };
    let offered: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    if let (false, Some(s), Some(n)) = (append, size, offered) {
        if n != s {
            return Err(Fetch::Fatal(anyhow!(
                "the server offers {n} bytes, the expected size is {s}: not the expected file"
            )));
        }
    }
    let total = match (append, size) {
        (_, Some(s)) => Some(s),
        (false, None) => offered,
        (true, None) => None,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!append)
        .open(part)
        .map_err(|e| Fetch::Fatal(anyhow!("cannot write {}: {e}", part.display())))?;
    let mut done = if append {
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| Fetch::Fatal(anyhow!(e)))?
    } else {
        0
    };
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| Fetch::Broken(anyhow!("transfer broke off: {e}")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .map_err(|e| Fetch::Fatal(anyhow!("cannot write {}: {e}", part.display())))?;
        done += n as u64;
        (opts.progress)(done, total);
        if let Some(s) = size {
            if done > s {
                return Err(Fetch::Fatal(anyhow!(
                    "the server sent more than the expected {s} bytes"
                )));
            }
        }
    }
    file.sync_all().ok();
    if let Some(s) = size {
        if done < s {
            return Err(Fetch::Broken(anyhow!(
                "transfer ended at {done} of {s} bytes"
            )));
        }
    }
    Ok(())
}

fn verify(path: &Path, d: &Download) -> Result<()> {
    let len = std::fs::metadata(path)?.len();
    if let Some(s) = d.size {
        if len != s {
            bail!("size {len} bytes, expected {s}");
        }
    }
    match &d.checksum {
        Checksum::Sha256(want) => check("sha256", &sha256_file(path)?, want, false),
        Checksum::Sha256Prefix(want) => check("sha256", &sha256_file(path)?, want, true),
        Checksum::Md5(want) => check("md5", &hash_file::<md5::Md5>(path)?, want, false),
    }
}

fn check(kind: &str, got: &str, want: &str, prefix: bool) -> Result<()> {
    let matches = if prefix {
        got.starts_with(want)
    } else {
        got == want
    };
    if !matches {
        bail!(
            "{kind} {got}, expected {want}{}",
            if prefix { "..." } else { "" }
        );
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String> {
    hash_file::<Sha256>(path)
}

fn hash_file<H: Digest + Write>(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = H::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A known source of weights, from `weights/sources.json`.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Source {
    pub name: String,
    pub description: String,
    pub file: String,
    pub urls: Vec<String>,
    /// Bytes of the file, when known.
    #[serde(default)]
    pub size: Option<u64>,
    pub checksum: String,
    pub format: String,
    pub input_convention: String,
    pub license: String,
}

#[derive(serde::Deserialize)]
struct Manifest {
    sources: Vec<Source>,
}

pub const MANIFEST: &str = include_str!("../../weights/sources.json");

/// Replaces the built-in manifest with a file of the same form (mirrors, tests).
pub const SOURCES_ENV: &str = "IMPASTO_SOURCES";

/// The known sources, the default (the original Keras weights) first.
pub fn sources() -> Result<Vec<Source>> {
    let text = match std::env::var_os(SOURCES_ENV).filter(|s| !s.is_empty()) {
        Some(p) => std::fs::read_to_string(&p).with_context(|| {
            format!("{SOURCES_ENV}: cannot read {}", PathBuf::from(&p).display())
        })?,
        None => MANIFEST.to_string(),
    };
    Ok(serde_json::from_str::<Manifest>(&text)
        .context("the weights sources manifest is malformed")?
        .sources)
}

/// The source fetched when none is named: the manifest's first.
pub fn default_source() -> Result<Source> {
    sources()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the weights sources manifest lists no source"))
}

pub fn find_source(name: &str) -> Result<Source> {
    let all = sources()?;
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow!("unknown source {name:?}; known: {}", names.join(", ")))
}

impl Source {
    pub fn download(&self) -> Result<Download> {
        Ok(Download {
            urls: self.urls.clone(),
            size: self.size,
            checksum: self.checksum.parse()?,
        })
    }
}
