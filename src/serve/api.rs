//! The API under `/api` (JSON; `openapi.json` documents it) and the page's files. A
//! submission is checked whole before anything is kept: every file decoded by the command's
//! hostile-file-safe readers, the settings by the command's own parser.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::ReceiverStream;

use super::state::Server;
use super::store::{new_id, valid_id, Record, Status, Submission};
use super::worker::{job_options, Hub};
use crate::options;

/// An API error: its status and `{"error": "..."}`.
pub struct Refusal(pub StatusCode, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, message.into())
}

fn internal(e: anyhow::Error) -> Refusal {
    Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

/// Whether a client may set option `name`: not the engine's, not those that write files
/// beside a command's output (the result's bit depth is the download's), not a path on the
/// server (`weights`; `init` only as content or noise, checked apart).
fn client_may_set(name: &str) -> bool {
    !(options::ENGINE_WIDE.contains(&name)
        || options::COMMAND_OUTPUTS.contains(&name)
        || ["weights", "max-memory"].contains(&name))
}

/// The files and settings of a submission.
#[derive(Default)]
struct Upload {
    content: Option<Bytes>,
    styles: Vec<Bytes>,
    masks: Vec<Bytes>,
    settings: Option<serde_json::Value>,
}

async fn read_upload(mut form: Multipart, max_file: usize) -> Result<Upload, Refusal> {
    let mut up = Upload::default();
    let refused = |what: &str, e: axum::extract::multipart::MultipartError| {
        Refusal(e.status(), format!("{what}: {e}"))
    };
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| refused("the form", e))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| refused(&name, e))?;
        if bytes.len() > max_file {
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{name}: {} bytes; at most {max_file} a file", bytes.len()),
            ));
        }
        match name.as_str() {
            "content" if up.content.is_none() => up.content = Some(bytes),
            "content" => return Err(bad("content: one content image")),
            "style" => up.styles.push(bytes),
            "mask" => up.masks.push(bytes),
            "settings" => {
                let value =
                    serde_json::from_slice(&bytes).map_err(|e| bad(format!("settings: {e}")))?;
                up.settings = Some(value);
            }
            other => {
                return Err(bad(format!(
                    "{other:?}: not a field (content, style, mask, settings)"
                )))
            }
        }
    }
    Ok(up)
}

/// `POST /api/jobs`.
pub async fn submit(
    State(server): State<Arc<Server>>, form: Multipart,
) -> Result<Response, Refusal> {
    let up = read_upload(form, server.limits.file_bytes).await?;
    let content = up
        .content
        .ok_or_else(|| bad("content: missing (one image file)"))?;
    if up.styles.is_empty() {
        return Err(bad("style: missing (one image file or more)"));
    }
    if !up.masks.is_empty() && up.masks.len() != up.styles.len() {
        return Err(bad(format!(
            "mask: {} masks for {} styles; one per style, in order",
            up.masks.len(),
            up.styles.len()
        )));
    }
    let settings = up.settings.unwrap_or_else(|| serde_json::json!({}));
    let o = check_settings(&server, &settings)?;
    let steps = options::settings_of(&o)
        .scales()
        .iter()
        .map(|s| s.steps)
        .sum();
    let settings = serde_json::Value::Object(settings.as_object().cloned().unwrap_or_default());
    let server2 = server.clone();
    // Decoding and writing are blocking work: off the runtime's threads.
    let id = tokio::task::spawn_blocking(move || {
        keep(&server2, content, up.styles, up.masks, &settings, steps)
    })
    .await
    .map_err(|e| internal(e.into()))??;
    server.hub.wake();
    let body = serde_json::json!({ "id": id, "status": "queued" });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The settings object checked by the command's parser over the server's defaults.
fn check_settings(
    server: &Server, settings: &serde_json::Value,
) -> Result<options::JobOptions, Refusal> {
    let object = settings
        .as_object()
        .ok_or_else(|| bad("settings: a JSON object of stylize's options"))?;
    for key in object.keys() {
        if !client_may_set(&options::flag_name(key)) {
            return Err(bad(format!(
                "settings: {key}: not a setting a client may give"
            )));
        }
    }
    if let Some(init) = object.get("init").and_then(|v| v.as_str()) {
        if !matches!(init, "content" | "noise") {
            return Err(bad("settings: init: content or noise"));
        }
    }
    job_options(&server.defaults, settings).map_err(|e| bad(format!("{e:#}")))
}

/// Decodes every file (a bad one refused, naming its field), writes them into a new job's
/// folder and queues it; 429 when the queue is full.
fn keep(
    server: &Server, content: Bytes, styles: Vec<Bytes>, masks: Vec<Bytes>,
    settings: &serde_json::Value, steps: u64,
) -> Result<String, Refusal> {
    let named = std::iter::once(("content".to_string(), &content))
        .chain(
            styles
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("style {i}"), b)),
        )
        .chain(
            masks
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("mask {i}"), b)),
        );
    let files: Vec<(String, &Bytes)> = named.collect();
    for (what, bytes) in &files {
        crate::io::image::decode(bytes)
            .map_err(|e| Refusal(StatusCode::UNPROCESSABLE_ENTITY, format!("{what}: {e:#}")))?;
    }
    let id = new_id();
    let store = &server.hub.store;
    let dir = store.incoming(&id).map_err(internal)?;
    let write = |name: String, bytes: &Bytes| -> anyhow::Result<()> {
        crate::io::atomic::write_atomic(&dir.join(name), |f| {
            Ok(std::io::Write::write_all(f, bytes)?)
        })
    };
    let names = std::iter::once("content".to_string())
        .chain((0..styles.len()).map(|i| format!("style-{i}")))
        .chain((0..masks.len()).map(|i| format!("mask-{i}")));
    for (name, (_, bytes)) in names.zip(&files) {
        write(name, bytes).map_err(internal)?;
    }
    let job = Submission {
        id: &id,
        settings,
        styles: styles.len(),
        masks: masks.len(),
        steps,
    };
    let added = store.add(&job, &dir, server.limits.queue);
    match added.map_err(internal)? {
        true => Ok(id),
        false => Err(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the queue is full ({} jobs waiting); try again later",
                server.limits.queue
            ),
        )),
    }
}

/// A job's record with its live progress when it runs.
fn with_live(hub: &Hub, mut record: Record) -> serde_json::Value {
    let live = hub.live();
    let running = live.as_ref().filter(|l| l.id == record.id);
    if let Some(l) = running {
        record.step = l.step as u64;
        record.losses = l.losses.clone();
    }
    let mut json = serde_json::to_value(&record).unwrap_or_default();
    if let Some(l) = running {
        json["eta_seconds"] = serde_json::json!(l.eta());
        json["previews"] = l.previews.into();
    }
    json
}

fn found(server: &Server, id: &str) -> Result<Record, Refusal> {
    if !valid_id(id) {
        return Err(bad(format!("{id:?} is not a job id")));
    }
    server
        .hub
        .store
        .get(id)
        .map_err(internal)?
        .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("no job {id}")))
}

/// `GET /api/jobs`.
pub async fn list(State(server): State<Arc<Server>>) -> Result<Response, Refusal> {
    let records = server.hub.store.list().map_err(internal)?;
    let jobs: Vec<_> = records
        .into_iter()
        .map(|r| with_live(&server.hub, r))
        .collect();
    Ok(Json(jobs).into_response())
}

/// `GET /api/jobs/{id}`.
pub async fn show(
    State(server): State<Arc<Server>>, Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let record = found(&server, &id)?;
    Ok(Json(with_live(&server.hub, record)).into_response())
}

#[derive(serde::Deserialize)]
pub struct Bits {
    bits: Option<u8>,
}

/// `GET /api/jobs/{id}/result[?bits=16]`.
pub async fn result(
    State(server): State<Arc<Server>>, Path(id): Path<String>, Query(q): Query<Bits>,
) -> Result<Response, Refusal> {
    let record = found(&server, &id)?;
    if record.status != Status::Done {
        return Err(Refusal(
            StatusCode::CONFLICT,
            format!("job {id} is {:?}: no result", record.status),
        ));
    }
    let name = match q.bits {
        None | Some(8) => "result.png",
        Some(16) => "result16.png",
        Some(b) => return Err(bad(format!("bits={b}: 8 or 16"))),
    };
    let bytes = tokio::fs::read(server.hub.store.folder(&id).join(name))
        .await
        .map_err(|e| internal(e.into()))?;
    let disposition = format!("attachment; filename=\"impasto-{id}.png\"");
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /api/jobs/{id}/preview.png`: the running job's latest logged picture.
pub async fn preview(
    State(server): State<Arc<Server>>, Path(id): Path<String>,
) -> Result<Response, Refusal> {
    found(&server, &id)?;
    let png = server
        .hub
        .live()
        .as_ref()
        .filter(|l| l.id == id)
        .and_then(|l| l.preview.clone());
    match png {
        Some(bytes) => Ok(([(header::CONTENT_TYPE, "image/png")], bytes.to_vec()).into_response()),
        None => Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("job {id} has no picture yet"),
        )),
    }
}

/// `GET /api/jobs/{id}/content`, `style/{i}`: the pictures a job was given (thumbnails).
pub async fn input(
    State(server): State<Arc<Server>>, Path((id, what, index)): Path<(String, String, usize)>,
) -> Result<Response, Refusal> {
    let record = found(&server, &id)?;
    let name = match what.as_str() {
        "content" => "content".to_string(),
        "style" if index < record.styles => format!("style-{index}"),
        "mask" if index < record.masks => format!("mask-{index}"),
        _ => {
            return Err(Refusal(
                StatusCode::NOT_FOUND,
                format!("job {id} has no {what} {index}"),
            ))
        }
    };
    let bytes = tokio::fs::read(server.hub.store.folder(&id).join(name))
        .await
        .map_err(|e| internal(e.into()))?;
    Ok(bytes.into_response())
}

/// `DELETE /api/jobs/{id}`: cancels a queued or running job, deletes an ended one.
pub async fn remove(
    State(server): State<Arc<Server>>, Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let record = found(&server, &id)?;
    let hub = &server.hub;
    let status = if record.status.ended() {
        hub.store.delete(&id).map_err(internal)?;
        "deleted"
    } else if hub.store.cancel_queued(&id).map_err(internal)? {
        hub.tell(&id, "status", serde_json::json!({ "status": "cancelled" }));
        "cancelled"
    } else if hub.cancel_running(&id) {
        "cancelling"
    } else {
        return Err(Refusal(
            StatusCode::CONFLICT,
            format!("job {id} is starting; try again"),
        ));
    };
    Ok(Json(serde_json::json!({ "id": id, "status": status })).into_response())
}

/// `GET /api/jobs/{id}/events`: Server-Sent Events of the job, from its state now to its end:
/// `status` at once and at each change, `progress` after each step, `image` when a logged
/// step's picture is ready. The stream closes after the job's last status.
pub async fn events(
    State(server): State<Arc<Server>>, Path(id): Path<String>,
) -> Result<Response, Refusal> {
    // Subscribed before the record is read: no change falls between the two.
    let mut receiver = server.hub.events.subscribe();
    let record = found(&server, &id)?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let first = with_live(&server.hub, record.clone());
    tokio::spawn(async move {
        let event = |kind: &str, data: &serde_json::Value| {
            Ok(Event::default().event(kind).data(data.to_string()))
        };
        if tx.send(event("status", &first)).await.is_err() || record.status.ended() {
            return;
        }
        loop {
            let e = match receiver.recv().await {
                Ok(e) if e.id == id => e,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let ended = e.kind == "status" && e.data["status"] != "running";
            let data = match ended {
                // The job's whole record at its end.
                true => server
                    .hub
                    .store
                    .get(&id)
                    .ok()
                    .flatten()
                    .map(|r| with_live(&server.hub, r)),
                false => None,
            };
            if tx
                .send(event(e.kind, data.as_ref().unwrap_or(&e.data)))
                .await
                .is_err()
                || ended
            {
                return;
            }
        }
    });
    let stream: ReceiverStream<Result<Event, Infallible>> = ReceiverStream::new(rx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The server's style weight for each --style-loss (its --style-weight if it was given one).
fn style_weights(defaults: &options::JobOptions) -> serde_json::Value {
    use clap::ValueEnum;
    let each = crate::model::StyleLossKind::value_variants()
        .iter()
        .map(|&kind| {
            let o = options::JobOptions {
                style_loss: kind,
                ..defaults.clone()
            };
            let name = kind
                .to_possible_value()
                .expect("a named variant")
                .get_name()
                .to_string();
            (name, serde_json::Value::from(o.style_weight().to_string()))
        });
    serde_json::Value::Object(each.collect())
}

/// `GET /api/options`: the settings a job may give, with their help and the server's defaults.
pub async fn options_list(State(server): State<Arc<Server>>) -> Response {
    let list: Vec<_> = options::described(&server.defaults)
        .into_iter()
        .filter(|(name, _, _)| client_may_set(name))
        .map(|(name, help, default)| {
            let mut entry = serde_json::json!({ "name": name, "help": help, "default": default });
            if name == "style-weight" {
                // The page's strength slider scales the default of the loss the form chose.
                entry["default_by_style_loss"] = style_weights(&server.defaults);
            }
            entry
        })
        .collect();
    Json(list).into_response()
}
