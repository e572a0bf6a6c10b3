//! `--preview`: a small web page that watches a run, served by tiny_http on its own threads.
//!
//! Routes (GET only; anything else is 404 or 405, and no path reaches the file system):
//! `/` the page (embedded), `/image.png` the image of the latest logged step, `/report.json`
//! the report so far (the `--report` JSON, `"outcome": "running"` until the end), `/events` a
//! Server-Sent Events stream: one message per logged step, in order, then one with the outcome.
//!
//! The optimisation thread only appends to a list under a mutex and hands the image to an
//! encoder thread when that thread is idle (a busy encoder skips the image, never the step);
//! each client is served on its own thread, so a slow or vanished browser blocks nobody.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::model::Image;

const PAGE: &str = include_str!("page.html");
/// Clients served at once (each event stream holds one); more get 503.
pub const MAX_CONNECTIONS: usize = 32;

struct State {
    /// The report's fixed fields (engine, adapter, sizes, settings).
    head: serde_json::Value,
    entries: Vec<serde_json::Value>,
    /// The event stream's messages so far (JSON); a message's id is its index.
    events: Vec<String>,
    image_png: Option<Arc<Vec<u8>>>,
    /// The final report, once the run has ended.
    report: Option<String>,
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    connections: AtomicUsize,
    encoding: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking client thread must not take the preview down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Preview {
    shared: Arc<Shared>,
    server: Arc<Server>,
    encoder: SyncSender<Image>,
    pub url: String,
}

impl Preview {
    /// Listens on `addr` (port 0: one the system picks) and starts serving.
    pub fn start(addr: &str) -> Result<Preview> {
        let server = Server::http(addr)
            .map_err(|e| anyhow::anyhow!("--preview {addr}: cannot listen there: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow::anyhow!("--preview {addr}: not an IP address"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                head: serde_json::json!({}),
                entries: Vec::new(),
                events: Vec::new(),
                image_png: None,
                report: None,
                done: false,
            }),
            changed: Condvar::new(),
            connections: AtomicUsize::new(0),
            encoding: AtomicBool::new(false),
        });
        let server = Arc::new(server);
        {
            let (server, shared) = (server.clone(), shared.clone());
            std::thread::Builder::new()
                .name("preview-accept".into())
                .spawn(move || accept(&server, &shared))?;
        }
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
            server,
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
        self.shared.changed.notify_all();
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
        self.shared.changed.notify_all();
    }

    /// The report as `/report.json` serves it now.
    fn report(s: &State) -> String {
        if let Some(r) = &s.report {
            return r.clone();
        }
        let mut r = s.head.clone();
        if let Some(o) = r.as_object_mut() {
            o.insert("steps".into(), serde_json::Value::from(s.entries.clone()));
            o.insert("outcome".into(), "running".into());
        }
        r.to_string()
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.server.unblock();
        // Event streams end once they have sent everything.
        self.shared.lock().done = true;
        self.shared.changed.notify_all();
    }
}

fn accept(server: &Server, shared: &Arc<Shared>) {
    for request in server.incoming_requests() {
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            let _ = request.respond(text(503, "too many connections\n"));
            continue;
        }
        let client = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("preview-client".into())
            .spawn(move || {
                serve(request, &client);
                client.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // No thread for it: the request is dropped (the client sees the connection close).
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The page, with the report so far written into it (so that it draws before its first
/// event); `<` escaped so that no text in the report can close the script.
fn page(s: &State) -> String {
    let report = Preview::report(s).replace('<', "\\u003c");
    PAGE.replace("/*REPORT*/null", &report)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn text(code: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn serve(request: Request, shared: &Shared) {
    if *request.method() != Method::Get && *request.method() != Method::Head {
        let r = text(405, "only GET\n").with_header(header("Allow", "GET, HEAD"));
        let _ = request.respond(r);
        return;
    }
    // The query string (the page adds one to defeat caches) plays no part.
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let no_store = header("Cache-Control", "no-store");
    let response = match path.as_str() {
        "/" => Response::from_string(page(&shared.lock()))
            .with_header(header("Content-Type", "text/html; charset=utf-8"))
            .with_header(no_store),
        "/report.json" => Response::from_string(Preview::report(&shared.lock()))
            .with_header(header("Content-Type", "application/json"))
            .with_header(no_store),
        "/image.png" => match shared.lock().image_png.clone() {
            Some(png) => Response::from_data(png.as_slice())
                .with_header(header("Content-Type", "image/png"))
                .with_header(no_store),
            None => text(503, "no image yet\n").with_header(header("Retry-After", "1")),
        },
        "/events" => return events(request, shared),
        _ => text(
            404,
            "not found: the routes are /, /image.png, /report.json, /events\n",
        ),
    };
    let _ = request.respond(response);
}

/// The event stream: every message from the one after `Last-Event-ID` (a reconnection) or
/// from the first, each flushed as it comes, until the run's last message has been sent.
fn events(request: Request, shared: &Shared) {
    let mut next = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Last-Event-ID"))
        .and_then(|h| h.value.as_str().trim().parse::<usize>().ok())
        .map_or(0, |id| id + 1);
    // tiny_http buffers streamed bodies, so the stream writes its own (fixed) response head
    // on the socket and flushes each message.
    let mut out = request.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
    if out
        .write_all(head.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return;
    }
    loop {
        let (batch, done) = {
            let mut s = shared.lock();
            while s.events.len() <= next && !s.done {
                // A timeout, so that a vanished client is noticed by the keep-alive below.
                let (g, _) = shared
                    .changed
                    .wait_timeout(s, Duration::from_secs(15))
                    .unwrap_or_else(|e| e.into_inner());
                s = g;
                if s.events.len() <= next && !s.done {
                    break;
                }
            }
            let batch: Vec<(usize, String)> = s.events[next.min(s.events.len())..]
                .iter()
                .enumerate()
                .map(|(i, e)| (next + i, e.clone()))
                .collect();
            (batch, s.done)
        };
        let mut text = String::new();
        for (id, e) in &batch {
            text.push_str(&format!("id: {id}\ndata: {e}\n\n"));
        }
        if batch.is_empty() && !done {
            text.push_str(": keep-alive\n\n");
        }
        next += batch.len();
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
        if done && batch.is_empty() {
            return;
        }
    }
}
