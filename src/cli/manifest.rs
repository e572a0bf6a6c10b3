//! `impasto batch`'s manifest: a CSV file with a header row, or JSON Lines (by the extension
//! `.jsonl`) with the same keys. Each row is a job: `content`, `style` (several separated by
//! `;`), `output`, and optionally any `stylize` option's long name (`size`, `style_weight` or
//! `style-weight`, ...) overriding the batch's defaults for that job. Relative paths are
//! relative to the manifest's folder.

use std::path::{Path, PathBuf};

use super::flags::{FlagError, JobOptions};
use crate::options::{self, ENGINE_WIDE};

/// One job of the manifest.
#[derive(Clone, Debug)]
pub struct Row {
    /// Its line in the manifest (the header is line 1 of a CSV file).
    pub line: usize,
    pub content: PathBuf,
    pub styles: Vec<PathBuf>,
    pub output: PathBuf,
    /// The options it overrides, as (long name, value), in column order.
    pub options: Vec<(String, String)>,
}

/// Options that hold a path: relative ones are taken from the manifest's folder.
const PATH_OPTIONS: &[&str] = &["weights", "report", "plot", "init"];
/// Options a job may not set: the engine's (the batch's), and these, which do not belong to
/// one job.
const BATCH_WIDE: &[&str] = &["preview", "preview-hold", "dry-run"];

/// Reads and checks a manifest: every row's columns known, its three paths present. A
/// malformed manifest is a [`FlagError`] naming the file and the line.
pub fn read(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("manifest {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let records = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
    {
        json_lines(&text)
    } else {
        csv_records(&text)
    };
    let known = options::names();
    let mut rows = Vec::new();
    for record in records.map_err(|e| FlagError(format!("manifest {}: {e}", path.display())))? {
        let line = record.0;
        let row = row(record, dir, &known)
            .map_err(|e| FlagError(format!("manifest {} line {line}: {e}", path.display())))?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(FlagError(format!("manifest {}: no jobs", path.display())).into());
    }
    Ok(rows)
}

/// A record: its line and its (key, value) cells, empty cells left out.
type Record = (usize, Vec<(String, String)>);

fn csv_records(text: &str) -> Result<Vec<Record>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = (reader.headers().map_err(|e| e.to_string())?.iter())
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => format!("line {}: {e}", p.line()),
            None => e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cells = (header.iter().zip(record.iter()))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        out.push((line, cells));
    }
    Ok(out)
}

fn json_lines(text: &str) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Some(object) = value.as_object() else {
            return Err(format!("line {}: not a JSON object", i + 1));
        };
        let mut cells = Vec::new();
        for (k, v) in object {
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                // A list: styles joined by `;`, other lists (layers, blend weights) by `,`.
                serde_json::Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(plain).collect();
                    items.join(if k == "style" { ";" } else { "," })
                }
                other => plain(other),
            };
            cells.push((k.clone(), text));
        }
        out.push((i + 1, cells));
    }
    Ok(out)
}

/// A JSON value as a flag's value: strings without their quotes.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn row((line, cells): Record, dir: &Path, known: &[String]) -> Result<Row, String> {
    let path = |v: &str| dir.join(v);
    let (mut content, mut styles, mut output) = (None, Vec::new(), None);
    let mut options = Vec::new();
    for (key, value) in cells {
        let name = options::flag_name(&key);
        match name.as_str() {
            "content" => content = Some(path(&value)),
            "style" => styles = value.split(';').map(|s| path(s.trim())).collect(),
            "output" => output = Some(path(&value)),
            n if BATCH_WIDE.contains(&n) || ENGINE_WIDE.contains(&n) => {
                return Err(format!(
                    "column {key}: --{n} is the same for every job; give it to impasto batch"
                ))
            }
            n if known.iter().any(|k| k == n) => {
                let keep = matches!(value.as_str(), "content" | "noise");
                let value = match PATH_OPTIONS.contains(&n) && !(n == "init" && keep) {
                    true => path(&value).to_string_lossy().into_owned(),
                    false => value,
                };
                options.push((n.to_string(), value));
            }
            _ => return Err(format!("unknown column {key:?} (not a stylize option)")),
        }
    }
    let missing = |what: &str| format!("no {what} (columns content, style and output are needed)");
    Ok(Row {
        line,
        content: content.ok_or_else(|| missing("content"))?,
        styles: Some(styles)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("style"))?,
        output: output.ok_or_else(|| missing("output"))?,
        options,
    })
}

/// The batch's defaults with `row`'s options applied; a bad value is an error naming the
/// column (the message clap gives for the flag).
pub fn options_for(defaults: &JobOptions, row: &Row) -> Result<JobOptions, String> {
    options::apply(defaults, &row.options)
}
