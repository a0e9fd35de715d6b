//! `/metrics` (Prometheus text format) and `/healthz` on one small HTTP
//! listener, served from its own thread so a long experiment never blocks
//! a probe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the message counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// The queue.
    pub queue: String,
    /// `acked`, `requeued` or `dead_lettered`.
    pub result: String,
}

/// Labels of the experiment counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExperimentLabels {
    /// `succeeded`, `failed`, `timed_out`, `interrupted`.
    pub outcome: String,
}

/// The runner's metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    /// Messages settled, by queue and result.
    pub messages: Family<MessageLabels, Counter>,
    /// Experiments finished, by outcome.
    pub experiments: Family<ExperimentLabels, Counter>,
    /// Experiments running now.
    pub running: Gauge,
    /// GPUs the runner can give out.
    pub gpus: Gauge,
    /// GPUs left out for uncorrected ECC errors.
    pub gpus_failed: Gauge,
    /// The artifact cache's hits, misses and bytes, when there is a cache.
    cache: Option<(Counter, Counter, Gauge)>,
    /// The operating state (1 for the effective one).
    state: Option<Family<crate::state::StateLabels, Gauge>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("runner");
        registry.register("messages", "Queue messages settled", self.messages.clone());
        registry.register(
            "experiments",
            "Experiments finished",
            self.experiments.clone(),
        );
        registry.register(
            "experiments_running",
            "Experiments running now",
            self.running.clone(),
        );
        registry.register("gpus", "GPUs available to experiments", self.gpus.clone());
        registry.register(
            "gpus_failed",
            "GPUs not used because they report uncorrected ECC errors",
            self.gpus_failed.clone(),
        );
        if let Some(state) = &self.state {
            registry.register(
                "state",
                "The runner's state (1 for the effective one)",
                state.clone(),
            );
        }
        if let Some((hits, misses, bytes)) = &self.cache {
            registry.register(
                "cache_hits",
                "Artifacts served from the download cache",
                hits.clone(),
            );
            registry.register(
                "cache_misses",
                "Artifacts the download cache had to fetch",
                misses.clone(),
            );
            registry.register(
                "cache_bytes",
                "Bytes held by the download cache",
                bytes.clone(),
            );
        }
        registry
    }

    /// Publish the cache's counters.
    pub fn register_cache(&mut self, cache: &crate::cache::Cache) {
        self.cache = Some((
            cache.hits.clone(),
            cache.misses.clone(),
            cache.bytes.clone(),
        ));
    }

    /// Publish the operating state.
    pub fn register_state(&mut self, control: &crate::state::Control) {
        self.state = Some(control.gauge.clone());
    }

    /// Publish the GPU inventory.
    pub fn set_gpus(&self, cards: &[crate::gpu::Card]) {
        let failed = cards.iter().filter(|card| card.ecc_failed).count();
        self.gpus
            .set(i64::try_from(cards.len() - failed).unwrap_or(i64::MAX));
        self.gpus_failed
            .set(i64::try_from(failed).unwrap_or(i64::MAX));
    }
}

/// Serve `/metrics` and `/healthz` on `address` from a background thread;
/// returns the bound address (port 0 picks one).
///
/// # Errors
/// The address cannot be bound.
pub fn serve(
    address: &str,
    metrics: &Metrics,
    stopping: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(metrics.registry());
    std::thread::Builder::new()
        .name("runner-http".to_owned())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    let registry = Arc::clone(&registry);
                    let stopping = Arc::clone(&stopping);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: Request<hyper::body::Incoming>| {
                                let registry = Arc::clone(&registry);
                                let stopping = Arc::clone(&stopping);
                                async move {
                                    Ok::<_, std::convert::Infallible>(answer(
                                        &request, &registry, &stopping,
                                    ))
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(bound)
}

fn answer(
    request: &Request<hyper::body::Incoming>,
    registry: &Registry,
    stopping: &AtomicBool,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => (
            StatusCode::OK,
            "text/plain",
            if stopping.load(Ordering::SeqCst) {
                "ok (draining)\n".to_owned()
            } else {
                "ok\n".to_owned()
            },
        ),
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(error) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{error}\n"),
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /healthz and /metrics are served\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
