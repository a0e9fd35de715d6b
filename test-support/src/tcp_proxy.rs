//! A TCP proxy in front of a real service that can make the network fail the
//! ways real networks do, below any protocol: a stall (connections accepted
//! and held, nothing forwarded: a dead route or a hung peer), a stall part
//! way through an answer, a refusal (every new connection closed at once),
//! and a reset of every open connection (a broker or load balancer that
//! restarts), and a slow link (a throttle in bytes per second, both ways:
//! transfers that keep moving but outlast any whole-request deadline).
//! The client code under test is the production code, speaking
//! its real protocol to the real service through the proxy.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::loopback::LoopbackServer;

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Forward,
    /// Accept and hold connections; forward nothing either way (open ones
    /// too) until the mode changes.
    Stall,
    /// Forward the first `n` bytes of each connection's answers (upstream to
    /// client), then hold it.
    StallAfter(u64),
    /// Close every new connection at once.
    Refuse,
    /// Forward both ways at about this many bytes per second each.
    Throttle(u64),
}

/// The proxy; its connections end and its threads stop when it is dropped.
pub struct TcpFaultProxy {
    address: SocketAddr,
    mode: watch::Sender<Mode>,
    resets: watch::Sender<u64>,
    _server: LoopbackServer,
}

impl TcpFaultProxy {
    /// Listen on a free loopback port and forward to `upstream`
    /// (`127.0.0.1:PORT`).
    ///
    /// # Errors
    /// The runtime or the listener cannot be created.
    pub fn start(upstream: &str) -> io::Result<Self> {
        let server = LoopbackServer::new("tcp-fault-proxy")?;
        let (mode, modes) = watch::channel(Mode::Forward);
        let (resets, reset_count) = watch::channel(0_u64);
        let upstream = upstream.to_owned();
        let address = server.listen(move |client| {
            let refused = *modes.borrow() == Mode::Refuse;
            let upstream = upstream.clone();
            let modes = modes.clone();
            let mut reset_count = reset_count.clone();
            reset_count.mark_unchanged();
            async move {
                if refused {
                    drop(client);
                    return;
                }
                tokio::select! {
                    () = connection(client, &upstream, modes) => {}
                    _ = reset_count.changed() => {}
                }
            }
        })?;
        Ok(Self {
            address,
            mode,
            resets,
            _server: server,
        })
    }

    /// `127.0.0.1:PORT`.
    #[must_use]
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn http_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Switch to `mode`.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Forward again (connections held by a stall resume).
    pub fn forward(&self) {
        self.set(Mode::Forward);
    }

    /// Hold every connection, new and open; forward nothing.
    pub fn stall(&self) {
        self.set(Mode::Stall);
    }

    /// Forward the first `bytes` of each connection's answers, then hold it.
    pub fn stall_after(&self, bytes: u64) {
        self.set(Mode::StallAfter(bytes));
    }

    /// Forward at about `bytes_per_second` in each direction of each connection.
    pub fn throttle(&self, bytes_per_second: u64) {
        self.set(Mode::Throttle(bytes_per_second.max(1)));
    }

    /// Close every new connection at once.
    pub fn refuse(&self) {
        self.set(Mode::Refuse);
    }

    /// Drop every open connection (both sides see it closed).
    pub fn reset_all(&self) {
        self.resets.send_modify(|count| *count += 1);
    }
}

/// Wait until the mode lets `direction` forward `already` more bytes.
async fn wait_until_forwarding(
    modes: &mut watch::Receiver<Mode>,
    answers: bool,
    already: u64,
) -> bool {
    loop {
        let go = match *modes.borrow_and_update() {
            Mode::Forward | Mode::Refuse | Mode::Throttle(_) => true,
            Mode::Stall => false,
            Mode::StallAfter(limit) => !answers || already < limit,
        };
        if go {
            return true;
        }
        if modes.changed().await.is_err() {
            return false;
        }
    }
}

/// One direction of a connection; `answers` is upstream to client.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut modes: watch::Receiver<Mode>,
    answers: bool,
) {
    let mut buffer = vec![0_u8; 16 << 10];
    let mut forwarded = 0_u64;
    loop {
        if !wait_until_forwarding(&mut modes, answers, forwarded).await {
            return;
        }
        let mut allowed = buffer.len();
        let mode = *modes.borrow();
        if answers && let Mode::StallAfter(limit) = mode {
            allowed = allowed.min(usize::try_from(limit - forwarded).unwrap_or(usize::MAX));
        }
        // A throttled link moves at most a twentieth of a second's worth at a time.
        let rate = match mode {
            Mode::Throttle(rate) => Some(rate),
            _ => None,
        };
        if let Some(rate) = rate {
            allowed = allowed.min(usize::try_from((rate / 20).max(1)).unwrap_or(usize::MAX));
        }
        let read = tokio::select! {
            read = from.read(&mut buffer[..allowed]) => read,
            // A stall that starts while waiting for data stops the reading.
            _ = modes.changed() => continue,
        };
        let Ok(read) = read else { return };
        if read == 0 {
            let _ = to.shutdown().await;
            return;
        }
        // A stall between the read and the write holds these bytes back.
        if !wait_until_forwarding(&mut modes, answers, forwarded).await {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
        forwarded += read as u64;
        if let Some(rate) = rate {
            // Pacing the link, not synchronising a test.
            #[allow(clippy::cast_precision_loss)]
            tokio::time::sleep(std::time::Duration::from_secs_f64(
                read as f64 / rate as f64,
            ))
            .await;
        }
    }
}

async fn connection(client: TcpStream, upstream: &str, mut modes: watch::Receiver<Mode>) {
    // A connection accepted during a stall is held before it reaches upstream.
    if !wait_until_forwarding(&mut modes, false, 0).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, modes.clone(), false),
        pump(server_read, client_write, modes, true),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    /// An upstream that answers every line with the same line.
    fn echo() -> io::Result<(std::net::SocketAddr, std::thread::JoinHandle<()>)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming().take(4) {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buffer = [0_u8; 1024];
                    while let Ok(read) = stream.read(&mut buffer) {
                        if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok((address, thread))
    }

    fn round_trip(stream: &mut std::net::TcpStream, text: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut answer = vec![0_u8; text.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn forwards_stalls_refuses_and_resets() -> io::Result<()> {
        let (upstream, _echo) = echo()?;
        let proxy = TcpFaultProxy::start(&upstream.to_string())?;
        let mut open = std::net::TcpStream::connect(proxy.address())?;
        open.set_read_timeout(Some(Duration::from_millis(300)))?;
        assert_eq!(round_trip(&mut open, b"one")?, b"one");

        proxy.stall();
        let stalled = round_trip(&mut open, b"two");
        assert!(stalled.is_err(), "a stalled proxy answered: {stalled:?}");

        proxy.forward();
        // The held bytes arrive once the stall ends.
        open.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut late = [0_u8; 3];
        open.read_exact(&mut late)?;
        assert_eq!(&late, b"two");

        proxy.refuse();
        let mut refused = std::net::TcpStream::connect(proxy.address())?;
        refused.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buffer = [0_u8; 1];
        assert_eq!(refused.read(&mut buffer).unwrap_or(0), 0, "not closed");

        proxy.forward();
        proxy.reset_all();
        let after_reset = open.read(&mut buffer);
        assert!(
            matches!(after_reset, Ok(0) | Err(_)),
            "the open connection survived the reset: {after_reset:?}"
        );
        Ok(())
    }
}
