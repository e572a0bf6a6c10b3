//! The server's address, the names it answers to (its Host header must be one of them) and
//! its token.

use std::net::SocketAddr;

/// The cookie that carries the token once the printed URL was opened.
pub const COOKIE: &str = "impasto_token";

/// The server's address, the names it answers to and its token.
pub struct Access {
    bound: SocketAddr,
    hosts: Vec<String>,
    pub token: Option<String>,
}

impl Access {
    pub fn new(bound: SocketAddr, token: Option<String>) -> Access {
        let port = bound.port();
        let mut hosts: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|h| format!("{h}:{port}"))
            .collect();
        hosts.push(bound.to_string());
        Access {
            bound,
            hosts,
            token,
        }
    }

    /// The URL to open, with the token when there is one (as Jupyter prints it).
    pub fn url(&self) -> String {
        let host = match self.bound.ip() {
            ip if ip.is_unspecified() || ip.is_loopback() => {
                format!("127.0.0.1:{}", self.bound.port())
            }
            _ => self.bound.to_string(),
        };
        match &self.token {
            Some(t) => format!("http://{host}/?token={t}"),
            None => format!("http://{host}/"),
        }
    }

    pub fn known_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
            || (self.bound.ip().is_unspecified()
                && host.ends_with(&format!(":{}", self.bound.port())))
    }
}

/// Equal without telling, by its time, how much of a guess was right.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
