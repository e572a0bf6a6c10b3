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
    /// Lower-case hex.
    pub sha256: String,
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
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    size: Option<u64>,
    opts: &mut Options,
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
    let total = match (append, size) {
        (_, Some(s)) => Some(s),
        (false, None) => resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok()),
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
    let got = sha256_file(path)?;
    if got != d.sha256.to_lowercase() {
        bail!("sha256 {got}, expected {}", d.sha256);
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
