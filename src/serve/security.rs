//! Who may ask what of `impasto serve`, checked on every request before any handler:
//! - the Host header must name the server (a loopback name or the listen address, with its
//!   port): a page of another site that rebinds its DNS name to 127.0.0.1 gets 421;
//! - a state-changing request (anything but GET and HEAD) with an Origin other than the
//!   server's own gets 403 (another site's page posting through the user's browser);
//! - with a token, every request carries it (`Authorization: Bearer T`, or the cookie that
//!   opening `/?token=T` sets): none is 401, a wrong one 403;
//! - every response says `Content-Security-Policy` (scripts, styles and requests of the
//!   server's own only, no inline script), `X-Content-Type-Options: nosniff`, no framing, no
//!   referrer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::access::same;
use super::api::Refusal;
use super::state::Server;

const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
use super::access::COOKIE;

fn token_of(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_string());
    }
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    cookies
        .flat_map(|c| c.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn query_token(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
}

/// The checks above, then the handler, then the headers.
pub async fn guard(State(server): State<Arc<Server>>, req: Request, next: Next) -> Response {
    let access = &server.access;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !access.known_host(host) {
        let said = format!("Host {host:?} is not this server's name");
        return with_headers(Refusal(StatusCode::MISDIRECTED_REQUEST, said).into_response());
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if let Some(origin) = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
        {
            let own = origin
                .strip_prefix("http://")
                .is_some_and(|h| access.known_host(h));
            if !own {
                let said = format!("Origin {origin:?} is not this server");
                return with_headers(Refusal(StatusCode::FORBIDDEN, said).into_response());
            }
        }
    }
    if let Some(token) = &access.token {
        // Opening the printed URL: the token becomes a cookie, and the address bar loses it.
        if req.uri().path() == "/" && query_token(&req).is_some_and(|t| same(&t, token)) {
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            return with_headers(r);
        }
        match token_of(&req) {
            None => {
                let said = "a token is needed: open the URL impasto serve printed, or send Authorization: Bearer TOKEN";
                return with_headers(
                    Refusal(StatusCode::UNAUTHORIZED, said.into()).into_response(),
                );
            }
            Some(t) if !same(&t, token) => {
                return with_headers(
                    Refusal(StatusCode::FORBIDDEN, "wrong token".into()).into_response(),
                );
            }
            Some(_) => {}
        }
    }
    with_headers(next.run(req).await)
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}
