//! What the run's thread writes and the preview's handlers read: the report so far, the event
//! messages, the latest picture, and a counter that moves at each change (the event streams
//! wait on it).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct State {
    /// The report's fixed fields (engine, adapter, sizes, settings).
    pub head: serde_json::Value,
    pub entries: Vec<serde_json::Value>,
    /// The event stream's messages so far (JSON); a message's id is its index.
    pub events: Vec<String>,
    pub image_png: Option<Arc<Vec<u8>>>,
    /// The final report, once the run has ended.
    pub report: Option<String>,
    pub done: bool,
}

impl State {
    /// The report as `/report.json` serves it now.
    pub fn report(&self) -> String {
        if let Some(r) = &self.report {
            return r.clone();
        }
        let mut r = self.head.clone();
        if let Some(o) = r.as_object_mut() {
            o.insert(
                "steps".into(),
                serde_json::Value::from(self.entries.clone()),
            );
            o.insert("outcome".into(), "running".into());
        }
        r.to_string()
    }
}

pub struct Shared {
    state: Mutex<State>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Event streams open now.
    pub streams: AtomicUsize,
    /// Whether the encoder thread is busy with a picture.
    pub encoding: AtomicBool,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            state: Mutex::new(State {
                head: serde_json::json!({}),
                entries: Vec::new(),
                events: Vec::new(),
                image_png: None,
                report: None,
                done: false,
            }),
            changed: tokio::sync::watch::channel(0).0,
            streams: AtomicUsize::new(0),
            encoding: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler must not take the preview down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the event streams.
    pub fn changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// A receiver that sees each change from now on.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
