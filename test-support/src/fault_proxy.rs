//! A TCP proxy in front of a real HTTP service that records every request
//! and can answer chosen ones with an error status instead of passing them
//! on: a registry that answers 500 a few times, then works.
//!
//! Each connection carries exactly one request (the proxy adds
//! `Connection: close`), so every request's line is seen, keep-alive or not.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::loopback::LoopbackServer;

/// One request the proxy saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The status the proxy answered itself, when it did.
    pub injected: Option<u16>,
}

#[derive(Default)]
struct Rule {
    remaining: usize,
    status: u16,
    method: Option<String>,
    path: Option<String>,
}

#[derive(Default)]
struct State {
    rule: Rule,
    seen: Vec<Seen>,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    _server: LoopbackServer,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream` (`127.0.0.1:PORT`).
    ///
    /// # Errors
    /// The runtime or the listener cannot be created.
    pub fn start(upstream: &str) -> io::Result<Self> {
        let server = LoopbackServer::new("fault-proxy")?;
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_owned();
        let shared = Arc::clone(&state);
        let address = server.listen(move |client| {
            let shared = Arc::clone(&shared);
            let upstream = upstream.clone();
            async move {
                let _ = serve(client, &upstream, &shared).await;
            }
        })?;
        Ok(Self {
            address,
            state,
            _server: server,
        })
    }

    /// `127.0.0.1:PORT`.
    #[must_use]
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Answer the next `count` requests matching `method` (any when `None`)
    /// and whose path equals `path` (any when `None`) with `status`.
    pub fn fail_next(&self, count: usize, status: u16, method: Option<&str>, path: Option<&str>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.rule = Rule {
            remaining: count,
            status,
            method: method.map(str::to_owned),
            path: path.map(str::to_owned),
        };
    }

    /// Every request seen so far.
    #[must_use]
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .clone()
    }

    /// Forget the requests seen so far.
    pub fn clear(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .clear();
    }
}

async fn serve(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> io::Result<()> {
    let mut head = Vec::with_capacity(4096);
    let mut buffer = [0u8; 4096];
    let end = loop {
        let read = client.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
        if let Some(position) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        if head.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut words = text.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    let injected = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let rule = &mut state.rule;
        let matches = rule.remaining > 0
            && rule.method.as_deref().is_none_or(|wanted| wanted == method)
            && rule
                .path
                .as_deref()
                .is_none_or(|wanted| wanted == path.split('?').next().unwrap_or_default());
        let injected = matches.then(|| {
            rule.remaining -= 1;
            rule.status
        });
        state.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            injected,
        });
        injected
    };
    if let Some(status) = injected {
        let body =
            format!("{{\"errors\":[{{\"code\":\"UNKNOWN\",\"message\":\"injected {status}\"}}]}}");
        let answer = format!(
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(answer.as_bytes()).await?;
        return client.shutdown().await;
    }
    // One request per connection: ask both sides to close after it.
    let mut forwarded = String::with_capacity(end + 32);
    for line in text[..text.len() - 4].split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(forwarded.as_bytes()).await?;
    server.write_all(&head[end..]).await?;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    Ok(())
}
