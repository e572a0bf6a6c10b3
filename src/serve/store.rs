//! What `impasto serve` keeps, all under its data directory: the jobs' records in SQLite
//! (`jobs.sqlite`, WAL journal), each job's uploads and results in `jobs/ID/`. A job is
//! accepted only once its files are in place and its row is committed, so a server killed at
//! any moment restarts with every accepted job: the interrupted one queued again, finished
//! results served as before.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// A job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "queued" => Status::Queued,
            "running" => Status::Running,
            "done" => Status::Done,
            "cancelled" => Status::Cancelled,
            _ => Status::Failed,
        }
    }

    /// Whether the job has ended (its files may be deleted).
    pub fn ended(self) -> bool {
        matches!(self, Status::Done | Status::Failed | Status::Cancelled)
    }
}

/// A job as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Record {
    pub id: String,
    pub status: Status,
    /// Seconds since the Unix epoch.
    pub created: f64,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    /// The settings as submitted (stylize's long names, validated).
    pub settings: serde_json::Value,
    /// How many style images (and masks) the job has.
    pub styles: usize,
    pub masks: usize,
    pub step: u64,
    pub steps: u64,
    /// The last logged losses (content, style, tv, total).
    pub losses: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Jobs ahead of it in the queue (queued jobs only).
    pub position: Option<u64>,
}

/// A job as it is accepted.
pub struct Submission<'a> {
    pub id: &'a str,
    /// The settings as submitted (validated).
    pub settings: &'a serde_json::Value,
    pub styles: usize,
    pub masks: usize,
    /// Steps over every scale.
    pub steps: u64,
}

pub struct Store {
    db: Mutex<Connection>,
    dir: PathBuf,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

const COLUMNS: &str =
    "id, status, created, started, finished, settings, styles, masks, step, steps, losses, error, seq";

impl Store {
    /// Opens (or makes) the store in `dir`: the running job of a server that stopped is
    /// queued again, and folders without a committed row (a submission cut short) removed.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir.join("jobs"))
            .with_context(|| format!("--data {}: cannot make it", dir.display()))?;
        let db = Connection::open(dir.join("jobs.sqlite"))
            .with_context(|| format!("--data {}: cannot open jobs.sqlite", dir.display()))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS jobs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT UNIQUE NOT NULL,
                status TEXT NOT NULL,
                created REAL NOT NULL, started REAL, finished REAL,
                settings TEXT NOT NULL, styles INTEGER NOT NULL, masks INTEGER NOT NULL,
                step INTEGER NOT NULL DEFAULT 0, steps INTEGER NOT NULL,
                losses TEXT, error TEXT);
             UPDATE jobs SET status = 'queued', step = 0, started = NULL WHERE status = 'running';",
        )?;
        let store = Store {
            db: Mutex::new(db),
            dir: dir.to_path_buf(),
        };
        store.remove_orphans()?;
        Ok(store)
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The folder of job `id` (an id of the server's own form: see [`valid_id`]).
    pub fn folder(&self, id: &str) -> PathBuf {
        self.dir.join("jobs").join(id)
    }

    /// A folder for a submission being received; [`Store::add`] moves it into place.
    pub fn incoming(&self, id: &str) -> Result<PathBuf> {
        let dir = self.dir.join("jobs").join(format!("{id}.incoming"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn remove_orphans(&self) -> Result<()> {
        for entry in std::fs::read_dir(self.dir.join("jobs"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_id(&name) || self.get(&name)?.is_none() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// Queues `job`, whose files are in `incoming` (moved to its folder, then the row
    /// committed), unless `limit` jobs are waiting already (then false, and nothing kept).
    pub fn add(&self, job: &Submission<'_>, incoming: &Path, limit: usize) -> Result<bool> {
        let db = self.db();
        let waiting: i64 = db.query_row(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?;
        if waiting as usize >= limit {
            let _ = std::fs::remove_dir_all(incoming);
            return Ok(false);
        }
        std::fs::rename(incoming, self.folder(job.id))?;
        db.execute(
            "INSERT INTO jobs (id, status, created, settings, styles, masks, steps)
             VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6)",
            params![
                job.id,
                now(),
                job.settings.to_string(),
                job.styles as i64,
                job.masks as i64,
                job.steps as i64
            ],
        )?;
        Ok(true)
    }

    fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Record, i64)> {
        let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        let record = Record {
            id: row.get(0)?,
            status: Status::parse(&row.get::<_, String>(1)?),
            created: row.get(2)?,
            started: row.get(3)?,
            finished: row.get(4)?,
            settings: json(row.get(5)?).unwrap_or_default(),
            styles: row.get::<_, i64>(6)? as usize,
            masks: row.get::<_, i64>(7)? as usize,
            step: row.get::<_, i64>(8)? as u64,
            steps: row.get::<_, i64>(9)? as u64,
            losses: json(row.get(10)?),
            error: row.get(11)?,
            position: None,
        };
        Ok((record, row.get(12)?))
    }

    /// Every job, newest first, with the queued ones' places.
    pub fn list(&self) -> Result<Vec<Record>> {
        let db = self.db();
        let mut q = db.prepare(&format!("SELECT {COLUMNS} FROM jobs ORDER BY seq DESC"))?;
        let rows = q.query_map([], Store::record)?;
        let mut out: Vec<Record> = rows
            .map(|r| r.map(|r| r.0))
            .collect::<rusqlite::Result<_>>()?;
        let queued = out.iter().filter(|r| r.status == Status::Queued).count() as u64;
        let mut ahead = queued;
        for r in &mut out {
            if r.status == Status::Queued {
                ahead -= 1;
                r.position = Some(ahead);
            }
        }
        Ok(out)
    }

    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        let db = self.db();
        let found = db
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                Store::record,
            )
            .optional()?;
        let Some((mut record, seq)) = found else {
            return Ok(None);
        };
        if record.status == Status::Queued {
            let ahead: i64 = db.query_row(
                "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND seq < ?1",
                [seq],
                |r| r.get(0),
            )?;
            record.position = Some(ahead as u64);
        }
        Ok(Some(record))
    }

    /// The oldest queued job, now running.
    pub fn start_next(&self) -> Result<Option<Record>> {
        let db = self.db();
        let next: Option<String> = db
            .query_row(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = next else { return Ok(None) };
        db.execute(
            "UPDATE jobs SET status = 'running', started = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        drop(db);
        self.get(&id)
    }

    /// A running job's progress.
    pub fn progress(&self, id: &str, step: u64, losses: &serde_json::Value) -> Result<()> {
        self.db().execute(
            "UPDATE jobs SET step = ?2, losses = ?3 WHERE id = ?1",
            params![id, step as i64, losses.to_string()],
        )?;
        Ok(())
    }

    /// A job's end.
    pub fn finish(&self, id: &str, status: Status, error: Option<&str>) -> Result<()> {
        self.db().execute(
            "UPDATE jobs SET status = ?2, finished = ?3, error = ?4 WHERE id = ?1",
            params![id, status.name(), now(), error],
        )?;
        Ok(())
    }

    /// Cancels a queued job; true if it was queued.
    pub fn cancel_queued(&self, id: &str) -> Result<bool> {
        let n = self.db().execute(
            "UPDATE jobs SET status = 'cancelled', finished = ?2 WHERE id = ?1 AND status = 'queued'",
            params![id, now()],
        )?;
        Ok(n == 1)
    }

    /// Deletes an ended job: its row, then its files.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.db().execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        let _ = std::fs::remove_dir_all(self.folder(id));
        Ok(())
    }
}

/// A job id of the server's own form: 16 lowercase hexadecimal digits. Anything else (a
/// `/`, `..`, another length) is refused before it comes near the file system.
pub fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new job id.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
