//! The start-up every fake server and proxy of this crate shares: a runtime
//! of its own (so a synchronous test can hold the server without being
//! async), listeners on free loopback ports, an accept loop that hands each
//! connection to a task, and everything stopped when the owner is dropped.
//! Written once so that a fix (a port, a shutdown) reaches every fake.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};

/// A runtime serving listeners on loopback; stops them all when dropped.
pub struct LoopbackServer {
    runtime: Option<tokio::runtime::Runtime>,
}

impl LoopbackServer {
    /// A runtime with two worker threads named `name`.
    ///
    /// # Errors
    /// The runtime cannot be built.
    pub fn new(name: &str) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Listen on `127.0.0.1:0` and give each accepted connection to `serve`
    /// on a task of its own; the address the listener got.
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub fn listen<Serve, Served>(&self, serve: Serve) -> io::Result<SocketAddr>
    where
        Serve: Fn(TcpStream) -> Served + Send + 'static,
        Served: Future<Output = ()> + Send + 'static,
    {
        let runtime = self.runtime()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        Ok(address)
    }

    /// [`Self::listen`] with each connection served as HTTP/1.1 by `handle`.
    ///
    /// # Errors
    /// The listener cannot be bound.
    pub fn listen_http<Handle, Handled, Answer>(&self, handle: Handle) -> io::Result<SocketAddr>
    where
        Handle: Fn(Request<Incoming>) -> Handled + Clone + Send + Sync + 'static,
        Handled: Future<Output = Response<Answer>> + Send + 'static,
        Answer: Body + Send + 'static,
        Answer::Data: Send,
        Answer::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.listen(move |stream| {
            let handle = handle.clone();
            async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = handle(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            }
        })
    }

    fn runtime(&self) -> io::Result<&tokio::runtime::Runtime> {
        self.runtime
            .as_ref()
            .ok_or_else(|| io::Error::other("the loopback server was stopped"))
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
