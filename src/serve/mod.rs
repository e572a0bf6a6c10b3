//! `impasto serve`: the app in the browser. A web server (axum on tokio) with a page served
//! from the binary, a JSON API under `/api` (`openapi.json`), a queue kept in SQLite under
//! the data directory (`store.rs`), and the engine on a thread of its own (`worker.rs`)
//! running one job at a time through the library.
//!
//! It accepts files from a network, so (`security.rs`): loopback by default; a token on any
//! other address (generated when none is given); the Host header must name the server (DNS
//! rebinding) and a state-changing request's Origin must be its own; uploads bounded and
//! decoded by the command's hostile-file-safe readers; no client string ever a path; a strict
//! Content-Security-Policy.

mod access;
mod api;
mod security;
mod state;
mod store;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;

use crate::job::{Engine, Stylizers};
use crate::options::JobOptions;

use access::Access;
pub use state::Limits;
use state::Server;
pub use store::valid_id;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");
pub const OPENAPI: &str = include_str!("openapi.json");

/// The paintings shipped in the repository (docs/images/), the page's gallery: file name,
/// title, source.
const GALLERY: &[(&str, &str, &str, &[u8])] = &[
    (
        "starry_night.jpg",
        "Vincent van Gogh, The Starry Night, 1889",
        "public domain; via the examples of jcjohnson/neural-style",
        include_bytes!("../../docs/images/starry_night.jpg"),
    ),
    (
        "the_scream.jpg",
        "Edvard Munch, The Scream, 1893",
        "public domain; via the examples of jcjohnson/neural-style",
        include_bytes!("../../docs/images/the_scream.jpg"),
    ),
    (
        "woman_with_hat.jpg",
        "Henri Matisse, Woman with a Hat, 1905",
        "public domain; via the examples of jcjohnson/neural-style",
        include_bytes!("../../docs/images/woman_with_hat.jpg"),
    ),
];

async fn gallery_list() -> axum::Json<serde_json::Value> {
    let list: Vec<_> = (GALLERY.iter())
        .map(|(name, title, source, _)| serde_json::json!({ "name": name, "title": title, "source": source }))
        .collect();
    axum::Json(list.into())
}

async fn gallery_file(
    axum::extract::Path(name): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match GALLERY.iter().find(|g| g.0 == name) {
        Some(g) => ([(axum::http::header::CONTENT_TYPE, "image/jpeg")], g.3).into_response(),
        None => api::Refusal(
            axum::http::StatusCode::NOT_FOUND,
            format!("no painting {name:?}"),
        )
        .into_response(),
    }
}

/// What `impasto serve` was asked for.
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub token: Option<String>,
    pub engine: Engine,
    pub weights: Option<PathBuf>,
    pub defaults: JobOptions,
    pub limits: Limits,
}

/// Serves until Ctrl-C (or SIGTERM); the URL to open is printed first.
pub fn run(config: Config) -> Result<()> {
    let store = store::Store::open(&config.data)?;
    let hub = worker::Hub::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .with_context(|| format!("--listen {}: cannot listen there", config.listen))?;
    let bound = listener.local_addr()?;
    let access = Access::new(bound, config.token);
    crate::say!("serving on {}", access.url());
    println!("{}", access.url());
    let mut stylizers = Stylizers::new(config.engine);
    // The weights read (or fetched) before the first job, so that a bad file is said now.
    stylizers.get(
        config.weights.clone(),
        &crate::options::losses_of(&config.defaults),
    )?;
    let engine_thread = worker::Worker {
        hub: hub.clone(),
        stylizers,
        defaults: config.defaults.clone(),
        weights: config.weights,
    };
    std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || engine_thread.run())?;
    let server = Arc::new(Server {
        hub,
        defaults: config.defaults,
        limits: config.limits,
        access,
    });
    let app = router(server.clone());
    runtime.block_on(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })?;
    Ok(())
}

fn router(server: Arc<Server>) -> Router {
    use axum::routing::{delete, post};
    let files = |body: &'static str, kind: &'static str| {
        get(move || async move { ([(axum::http::header::CONTENT_TYPE, kind)], body) })
    };
    let upload_bytes = 20 * server.limits.file_bytes;
    Router::new()
        .route("/", files(PAGE, "text/html; charset=utf-8"))
        .route("/app.js", files(SCRIPT, "text/javascript; charset=utf-8"))
        .route("/app.css", files(STYLE, "text/css; charset=utf-8"))
        .route("/api/openapi.json", files(OPENAPI, "application/json"))
        .route("/api/options", get(api::options_list))
        .route("/api/gallery", get(gallery_list))
        .route("/gallery/{name}", get(gallery_file))
        .route("/api/jobs", post(api::submit).get(api::list))
        .route("/api/jobs/{id}", get(api::show).merge(delete(api::remove)))
        .route("/api/jobs/{id}/result", get(api::result))
        .route("/api/jobs/{id}/preview.png", get(api::preview))
        .route("/api/jobs/{id}/events", get(api::events))
        .route("/api/jobs/{id}/{what}/{index}", get(api::input))
        .layer(DefaultBodyLimit::max(upload_bytes))
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            security::guard,
        ))
        .with_state(server)
}
