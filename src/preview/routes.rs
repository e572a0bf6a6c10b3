//! The preview's routes, on axum (GET only: another method is 405, another path 404, and no
//! path reaches the file system): `/` the page (embedded, the report so far written into it),
//! `/image.png`, `/report.json`, and `/events`, Server-Sent Events from the one after
//! `Last-Event-ID` (a reconnection) or from the first, until the run's last message.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_stream::wrappers::ReceiverStream;

use super::state::Shared;

const PAGE: &str = include_str!("page.html");
/// Event streams served at once; more get 503.
pub const MAX_STREAMS: usize = 32;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/report.json", get(report))
        .route("/image.png", get(image))
        .route("/events", get(events))
        .fallback(|| async {
            let said = "not found: the routes are /, /image.png, /report.json, /events\n";
            (StatusCode::NOT_FOUND, said)
        })
        .with_state(shared)
}

const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

/// The page, with the report so far written into it (so that it draws before its first
/// event); `<` escaped so that no text in the report can close the script.
async fn page(State(shared): State<Arc<Shared>>) -> Response {
    let report = shared.lock().report().replace('<', "\\u003c");
    let html = PAGE.replace("/*REPORT*/null", &report);
    let kind = (header::CONTENT_TYPE, "text/html; charset=utf-8");
    ([kind, NO_STORE], html).into_response()
}

async fn report(State(shared): State<Arc<Shared>>) -> Response {
    let kind = (header::CONTENT_TYPE, "application/json");
    ([kind, NO_STORE], shared.lock().report()).into_response()
}

async fn image(State(shared): State<Arc<Shared>>) -> Response {
    match shared.lock().image_png.clone() {
        Some(png) => (
            [(header::CONTENT_TYPE, "image/png"), NO_STORE],
            png.to_vec(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "no image yet\n",
        )
            .into_response(),
    }
}

/// Counts an open event stream for as long as it lives.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn events(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if shared.streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        shared.streams.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    }
    let open = Open(shared.clone());
    let mut next = (headers.get("last-event-id"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |id| id + 1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    let mut changes = shared.watch();
    tokio::spawn(async move {
        let _open = open;
        loop {
            let (batch, done) = {
                let s = shared.lock();
                (s.events[next.min(s.events.len())..].to_vec(), s.done)
            };
            for e in &batch {
                let event = Event::default().id(next.to_string()).data(e.as_str());
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                next += 1;
            }
            if done && batch.is_empty() {
                return;
            }
            if batch.is_empty() && changes.changed().await.is_err() {
                return;
            }
        }
    });
    let stream = ReceiverStream::new(rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
