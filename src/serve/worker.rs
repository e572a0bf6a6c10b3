//! The engine's thread: the queued jobs one at a time, oldest first, on one engine whose
//! weights and style targets serve every job that shares them (`job::Stylizers`, as `impasto
//! batch` runs). Never on the async runtime: the server's handlers only read the store and
//! the live state, and wake this thread when a job is queued or cancelled.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::store::{Record, Status, Store};
use crate::job::{self, Ending, Image, Job, LogEntry, Observer, StepDone, StyleMask, Stylizers};
use crate::options::{self, JobOptions};

/// What the page hears about a job: `progress` after each step, `image` when a logged
/// step's picture is ready (fetch `/api/jobs/ID/preview.png`), `status` when it changes.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: String,
    pub kind: &'static str,
    pub data: serde_json::Value,
}

/// The running job as it goes: its progress, its latest picture, its cancel flag.
pub struct Live {
    pub id: String,
    pub step: usize,
    pub steps: usize,
    pub losses: Option<serde_json::Value>,
    pub started: Instant,
    /// The latest logged picture as an 8-bit PNG, and how many there have been.
    pub preview: Option<Arc<Vec<u8>>>,
    pub previews: u64,
    pub cancel: Arc<AtomicBool>,
}

impl Live {
    /// Seconds left, from the pace so far.
    pub fn eta(&self) -> Option<f64> {
        let pace = self.started.elapsed().as_secs_f64() / self.step.max(1) as f64;
        (self.step > 0).then(|| pace * (self.steps - self.step) as f64)
    }

    pub fn progress(&self) -> serde_json::Value {
        serde_json::json!({
            "step": self.step, "steps": self.steps, "losses": self.losses, "eta_seconds": self.eta(),
            "previews": self.previews,
        })
    }
}

/// What the handlers and the engine's thread share.
pub struct Hub {
    pub store: Store,
    live: Mutex<Option<Live>>,
    wake: (Mutex<bool>, Condvar),
    pub events: tokio::sync::broadcast::Sender<Event>,
}

impl Hub {
    pub fn new(store: Store) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            live: Mutex::new(None),
            wake: (Mutex::new(false), Condvar::new()),
            events: tokio::sync::broadcast::channel(1024).0,
        })
    }

    pub fn live(&self) -> MutexGuard<'_, Option<Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the engine's thread to look at the queue.
    pub fn wake(&self) {
        *self.wake.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.1.notify_one();
    }

    fn wait(&self) {
        let mut woken = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        if !*woken {
            woken = (self.wake.1.wait_timeout(woken, Duration::from_secs(1)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *woken = false;
    }

    pub fn tell(&self, id: &str, kind: &'static str, data: serde_json::Value) {
        // Nobody listening is not an error.
        let _ = self.events.send(Event {
            id: id.to_string(),
            kind,
            data,
        });
    }

    /// Raises the running job's cancel flag if it is `id`; true if it was.
    pub fn cancel_running(&self, id: &str) -> bool {
        match &*self.live() {
            Some(l) if l.id == id => {
                l.cancel.store(true, Ordering::SeqCst);
                true
            }
            _ => false,
        }
    }
}

/// The engine's side of the server.
pub struct Worker {
    pub hub: Arc<Hub>,
    pub stylizers: Stylizers,
    /// The server's defaults (its --weights), under each job's settings.
    pub defaults: JobOptions,
    pub weights: Option<PathBuf>,
}

impl Worker {
    /// Runs the queue until the process ends.
    pub fn run(mut self) {
        loop {
            match self.hub.store.start_next() {
                Ok(Some(record)) => self.one(record),
                Ok(None) => self.hub.wait(),
                Err(e) => {
                    crate::say!("serve: the store: {e:#}");
                    self.hub.wait();
                }
            }
        }
    }

    fn one(&mut self, record: Record) {
        let id = record.id.clone();
        self.hub
            .tell(&id, "status", serde_json::json!({ "status": "running" }));
        let cancel = Arc::new(AtomicBool::new(false));
        let (status, error) = match self.attempt(&record, &cancel) {
            Ok(Ending::Completed) => (Status::Done, None),
            Ok(Ending::Interrupted) => (Status::Cancelled, None),
            Ok(other) => (Status::Failed, Some(other.name().to_string())),
            Err(e) => (Status::Failed, Some(format!("{e:#}"))),
        };
        *self.hub.live() = None;
        if let Err(e) = self.hub.store.finish(&id, status, error.as_deref()) {
            crate::say!("serve: job {id}: {e:#}");
        }
        let said = serde_json::json!({ "status": status, "error": error });
        self.hub.tell(&id, "status", said);
    }

    /// One job: its files and settings made into a job as `stylize` makes one, run, and its
    /// pictures written (8 and 16 bits); a job that fails fails alone.
    fn attempt(&mut self, record: &Record, cancel: &Arc<AtomicBool>) -> Result<Ending> {
        let folder = self.hub.store.folder(&record.id);
        let o = job_options(&self.defaults, &record.settings)?;
        let content = job::open_image(&folder.join("content"))?;
        let styles = (0..record.styles)
            .map(|i| job::open_image(&folder.join(format!("style-{i}"))))
            .collect::<job::Result<Vec<_>>>()?;
        let masks = (record.masks > 0)
            .then(|| {
                (0..record.masks)
                    .map(|i| StyleMask::open(&folder.join(format!("mask-{i}"))))
                    .collect::<job::Result<Vec<_>>>()
            })
            .transpose()?;
        let mut job = options::assemble(&o, content, styles, masks)?;
        let stylizer = self
            .stylizers
            .get(self.weights.clone(), &options::losses_of(&o))?;
        stylizer.set_cancel_flag(cancel.clone());
        stylizer.set_max_memory(o.max_memory);
        options::take_tiles(stylizer, &mut job)?;
        let steps = job.settings.scales().iter().map(|s| s.steps as usize).sum();
        *self.hub.live() = Some(Live {
            id: record.id.clone(),
            step: 0,
            steps,
            losses: None,
            started: Instant::now(),
            preview: None,
            previews: 0,
            cancel: cancel.clone(),
        });
        let mut watch = Watch {
            hub: &self.hub,
            job: &job,
            id: &record.id,
        };
        let outcome = stylizer.run(&job, &mut watch)?;
        if outcome.ending == Ending::Completed {
            save(&job, &outcome.image, &folder)?;
        }
        Ok(outcome.ending)
    }
}

/// The server's defaults with a job's settings (a JSON object of stylize's long names).
pub fn job_options(defaults: &JobOptions, settings: &serde_json::Value) -> Result<JobOptions> {
    let pairs = options::json_pairs(settings).map_err(anyhow::Error::msg)?;
    options::apply(defaults, &pairs).map_err(|e| anyhow::anyhow!("settings: {e}"))
}

/// The result in 8 and 16 bits (each written whole, then renamed into place).
fn save(job: &Job, image: &Image, folder: &Path) -> Result<()> {
    job.save(image, &folder.join("result16.png"), 16)?;
    job.save(image, &folder.join("result.png"), 8)
}

/// The observer of a served job: progress and pictures to the live state and the events.
struct Watch<'a> {
    hub: &'a Hub,
    job: &'a Job,
    id: &'a str,
}

impl Observer for Watch<'_> {
    fn stepped(&mut self, at: &StepDone, _image: &dyn Fn() -> Result<Image>) -> Result<()> {
        let progress = match &mut *self.hub.live() {
            Some(l) => {
                l.step = at.steps_done;
                l.progress()
            }
            None => return Ok(()),
        };
        self.hub.tell(self.id, "progress", progress);
        Ok(())
    }

    fn logged(&mut self, entry: &LogEntry, image: &Image) -> Result<()> {
        let v = &entry.losses;
        let losses = serde_json::json!({
            "content": v.content, "style": v.style, "tv": v.tv, "total": v.total,
        });
        let png = Arc::new(crate::io::image::png_bytes(&self.job.presentable(image)));
        let previews = match &mut *self.hub.live() {
            Some(l) => {
                l.losses = Some(losses.clone());
                l.preview = Some(png);
                l.previews += 1;
                l.previews
            }
            None => 0,
        };
        self.hub
            .store
            .progress(self.id, entry.steps_done as u64, &losses)?;
        let data =
            serde_json::json!({ "previews": previews, "step": entry.steps_done, "losses": losses });
        self.hub.tell(self.id, "image", data);
        Ok(())
    }
}
