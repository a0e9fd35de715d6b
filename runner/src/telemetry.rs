//! `/metrics` (Prometheus text format) and `/healthz` on one small HTTP
//! listener, served from its own thread so a long experiment never blocks
//! a probe.
//!
//! `/healthz` tells the truth about intake: a runner that has not been able
//! to take work from its queues for longer than `--unhealthy-after` answers
//! 503, so Kubernetes restarts a stuck runner, but not one that lost its
//! broker for a few seconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// Whether intake works, as `/healthz` reports it: cheap to clone, shared
/// by the scheduler (which reports each intake attempt) and the listener.
#[derive(Clone, Debug)]
pub struct Health {
    unhealthy_after: Duration,
    /// Since when intake has failed, and the latest reason; `None` while it works.
    failing: Arc<Mutex<Option<Failing>>>,
}

#[derive(Clone, Debug)]
struct Failing {
    since: Instant,
    reason: String,
}

/// What `/healthz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthStatus {
    /// 200 or 503.
    pub code: StatusCode,
    /// A line for people: `ok`, or why not.
    pub body: String,
}

impl Health {
    /// Healthy until intake has failed continuously for longer than
    /// `unhealthy_after`.
    #[must_use]
    pub fn new(unhealthy_after: Duration) -> Self {
        Self {
            unhealthy_after,
            failing: Arc::default(),
        }
    }

    /// Intake worked (the queues could be listed and read, whether or not
    /// they held work): the failure streak, if any, is over.
    pub fn intake_ok(&self) {
        *self.lock() = None;
    }

    /// Intake failed now because of `reason`.
    pub fn intake_failed(&self, reason: &str) {
        self.intake_failed_at(reason, Instant::now());
    }

    /// Intake failed at `when` because of `reason`; the streak starts at its
    /// first failure, the latest reason is the one reported.
    pub fn intake_failed_at(&self, reason: &str, when: Instant) {
        let mut failing = self.lock();
        match failing.as_mut() {
            Some(streak) => reason.clone_into(&mut streak.reason),
            None => {
                *failing = Some(Failing {
                    since: when,
                    reason: reason.to_owned(),
                });
            }
        }
    }

    /// What `/healthz` answers at `now`: 200 while intake works or has
    /// failed for at most `unhealthy_after`, 503 once it has failed
    /// continuously for longer.
    #[must_use]
    pub fn status(&self, now: Instant) -> HealthStatus {
        let failing = self.lock().clone();
        let Some(Failing { since, reason }) = failing else {
            return HealthStatus {
                code: StatusCode::OK,
                body: "ok\n".to_owned(),
            };
        };
        let seconds = now.saturating_duration_since(since).as_secs();
        if now.saturating_duration_since(since) > self.unhealthy_after {
            return HealthStatus {
                code: StatusCode::SERVICE_UNAVAILABLE,
                body: format!(
                    "unhealthy: taking work from the queues has failed for {seconds}s (--unhealthy-after {}s): {reason}\n",
                    self.unhealthy_after.as_secs()
                ),
            };
        }
        HealthStatus {
            code: StatusCode::OK,
            body: format!("ok (taking work from the queues has failed for {seconds}s: {reason})\n"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failing>> {
        // The state is one value written whole: a poisoned lock still holds a good one.
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serve `/metrics` and `/healthz` on `address` from a background thread;
/// returns the bound address (port 0 picks one). `/healthz` answers as
/// `health` says.
///
/// # Errors
/// The address cannot be bound.
pub fn serve(
    address: &str,
    metrics: &Metrics,
    health: &Health,
    stopping: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(metrics.registry());
    let health = health.clone();
    std::thread::Builder::new()
        .name("runner-http".to_owned())
        .spawn(move || {
            // The accept loop runs on the process's runtime; this thread
            // only waits for it.
            let _ = crate::runtime::block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    let registry = Arc::clone(&registry);
                    let stopping = Arc::clone(&stopping);
                    let health = health.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: Request<hyper::body::Incoming>| {
                                let registry = Arc::clone(&registry);
                                let stopping = Arc::clone(&stopping);
                                let health = health.clone();
                                async move {
                                    Ok::<_, std::convert::Infallible>(answer(
                                        &request, &registry, &health, &stopping,
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
    health: &Health,
    stopping: &AtomicBool,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => {
            let HealthStatus { code, body } = health.status(Instant::now());
            let body = if code == StatusCode::OK && stopping.load(Ordering::SeqCst) {
                body.replacen("ok", "ok (draining)", 1)
            } else {
                body
            };
            (code, "text/plain", body)
        }
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

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    #[test]
    fn healthz_turns_503_only_after_intake_failed_for_longer_than_the_limit() {
        let health = Health::new(Duration::from_mins(5));
        let start = Instant::now();
        health.intake_ok();
        assert_eq!(health.status(start).code, StatusCode::OK);
        assert_eq!(health.status(start).body, "ok\n");
        // A blip: still healthy, and the body says what is going on.
        health.intake_failed_at("the broker is unreachable", start);
        let blip = health.status(start + Duration::from_secs(10));
        assert_eq!(blip.code, StatusCode::OK);
        assert!(blip.body.contains("the broker is unreachable"), "{blip:?}");
        // Failing on, with a new reason: the streak counts from its start.
        health.intake_failed_at("connection refused", start + Duration::from_mins(4));
        let at_the_limit = health.status(start + Duration::from_mins(5));
        assert_eq!(at_the_limit.code, StatusCode::OK, "{at_the_limit:?}");
        let past = health.status(start + Duration::from_secs(301));
        assert_eq!(past.code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            past.body,
            "unhealthy: taking work from the queues has failed for 301s (--unhealthy-after 300s): connection refused\n"
        );
        // A clone is the same health: the scheduler and the listener share it.
        health.clone().intake_ok();
        assert_eq!(
            health.status(start + Duration::from_mins(10)),
            HealthStatus {
                code: StatusCode::OK,
                body: "ok\n".to_owned()
            }
        );
        // A new streak starts from scratch.
        health.intake_failed_at("again", start + Duration::from_mins(10));
        assert_eq!(
            health.status(start + Duration::from_mins(11)).code,
            StatusCode::OK
        );
    }

    /// `GET path` on `address`: the status code and the body.
    fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    }

    #[test]
    fn the_listener_answers_503_while_intake_is_failing_too_long() -> std::io::Result<()> {
        let health = Health::new(Duration::from_millis(10));
        let stopping = Arc::new(AtomicBool::new(false));
        let address = serve("127.0.0.1:0", &Metrics::default(), &health, stopping)?;
        assert_eq!(get(address, "/healthz")?, (200, "ok\n".to_owned()));
        // Failing since a second ago, more than the 10 ms allowed.
        let a_second_ago = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .ok_or_else(|| std::io::Error::other("the clock starts less than a second ago"))?;
        health.intake_failed_at("listing the queues: connection refused", a_second_ago);
        let (code, body) = get(address, "/healthz")?;
        assert_eq!(code, 503, "{body}");
        assert!(
            body.starts_with("unhealthy: taking work from the queues has failed for ")
                && body.ends_with(": listing the queues: connection refused\n"),
            "{body}"
        );
        health.intake_ok();
        assert_eq!(get(address, "/healthz")?, (200, "ok\n".to_owned()));
        let (code, metrics) = get(address, "/metrics")?;
        assert_eq!(code, 200);
        assert!(metrics.contains("runner_experiments_running"), "{metrics}");
        Ok(())
    }
}
