//! `--preview`: a small web page that watches a run, served on axum (as `impasto serve` is)
//! by a runtime on a thread of its own.
//!
//! Routes (`routes.rs`; GET only; anything else is 404 or 405, and no path reaches the file
//! system): `/` the page (embedded), `/image.png` the image of the latest logged step,
//! `/report.json` the report so far (the `--report` JSON, `"outcome": "running"` until the
//! end), `/events` a Server-Sent Events stream: one message per logged step, in order, then one
//! with the outcome.
//!
//! The optimisation thread only appends to a list under a mutex and hands the image to an
//! encoder thread when that thread is idle (a busy encoder skips the image, never the step);
//! the handlers are async tasks, so a slow or vanished browser blocks nobody.

mod routes;
mod state;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use anyhow::Result;

use crate::model::Image;
use state::Shared;

pub use routes::MAX_STREAMS;

pub struct Preview {
    shared: Arc<Shared>,
    /// Stops the server (gracefully: the event streams end once they have sent everything).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    encoder: SyncSender<Image>,
    pub url: String,
}

impl Preview {
    /// Listens on `addr` (port 0: one the system picks) and starts serving.
    pub fn start(addr: &str) -> Result<Preview> {
        let cannot =
            |e: std::io::Error| anyhow::anyhow!("--preview {addr}: cannot listen there: {e}");
        let listener = std::net::TcpListener::bind(addr).map_err(cannot)?;
        listener.set_nonblocking(true).map_err(cannot)?;
        let bound = listener.local_addr().map_err(cannot)?;
        let shared = Arc::new(Shared::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = routes::router(shared.clone());
        std::thread::Builder::new()
            .name("preview-server".into())
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let listener = tokio::net::TcpListener::from_std(listener)?;
                            axum::serve(listener, app)
                                .with_graceful_shutdown(async {
                                    let _ = stopped.await;
                                })
                                .await
                        })
                    });
                if let Err(e) = served {
                    crate::say!("preview: the server stopped: {e}");
                }
            })?;
        let (encoder, images) = sync_channel::<Image>(1);
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("preview-png".into())
                .spawn(move || {
                    for img in images {
                        let bytes = Arc::new(crate::io::image::png_bytes(&img));
                        shared.lock().image_png = Some(bytes);
                        shared.encoding.store(false, Ordering::SeqCst);
                    }
                })?;
        }
        let host = match bound.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Ok(Preview {
            shared,
            stop: Some(stop),
            encoder,
            url: format!("http://{host}:{}/", bound.port()),
        })
    }

    /// The report's fixed fields (an object), shown by the page and in `/report.json`.
    pub fn set_head(&self, head: serde_json::Value) {
        self.shared.lock().head = head;
    }

    /// A logged step: its report entry (also the event's message) and, when the encoder is
    /// idle, its image.
    pub fn log(&self, entry: serde_json::Value, image: &Image) {
        if !self.shared.encoding.swap(true, Ordering::SeqCst) {
            // The channel holds one image and the encoder is idle: this never blocks.
            if self.encoder.try_send(image.clone()).is_err() {
                self.shared.encoding.store(false, Ordering::SeqCst);
            }
        }
        let mut s = self.shared.lock();
        s.events.push(entry.to_string());
        s.entries.push(entry);
        drop(s);
        self.shared.changed();
    }

    /// The end of the run: the final report and image, and a last event with the outcome.
    pub fn finish(&self, report: String, outcome: &str, seconds: f64, image: &Image) {
        let bytes = Arc::new(crate::io::image::png_bytes(image));
        let mut s = self.shared.lock();
        s.image_png = Some(bytes);
        s.report = Some(report);
        s.events.push(
            serde_json::json!({ "outcome": outcome, "final": true, "seconds": seconds })
                .to_string(),
        );
        s.done = true;
        drop(s);
        self.shared.changed();
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        // Event streams end once they have sent everything; then the server stops.
        self.shared.lock().done = true;
        self.shared.changed();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
