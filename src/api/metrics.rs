use super::{ApiError, AppState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route pattern, not the raw path, so ids do not explode the label set.
    path: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    path: String,
}

/// The node's Prometheus metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    auth_failures: Counter,
    blobs: BlobTraffic,
}

/// The blob store's stream counters, read when the metrics are: the store keeps them as plain
/// atomics, known here once the node has its activities.
#[derive(Debug, Clone, Default)]
struct BlobTraffic(Arc<OnceLock<Arc<agora_activity::blobs::Traffic>>>);

impl Collector for BlobTraffic {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(traffic) = self.0.get() else { return Ok(()) };
        let counters = [
            ("blob_received_bytes", "blob bytes that arrived from other nodes", &traffic.received),
            ("blob_sent_bytes", "blob bytes sent to other nodes", &traffic.sent),
            (
                "blob_fetch_retries",
                "times a blob fetch asked again, after its stream broke off or while the other node was unreachable",
                &traffic.retries,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agora");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "REST requests served", requests.clone());
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 8))
        });
        registry.register("http_request_duration_seconds", "REST request latency", durations.clone());
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "requests refused for a missing or unknown key",
            auth_failures.clone(),
        );
        registry.register(
            "build",
            "the running agora version",
            Info::new(vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
        );
        let blobs = BlobTraffic::default();
        registry.register_collector(Box::new(blobs.clone()));
        Self { registry, requests, durations, auth_failures, blobs }
    }

    /// Counts the traffic of the node's blob store from now on.
    pub fn watch_blobs(&self, traffic: Arc<agora_activity::blobs::Traffic>) {
        // One blob store per node: a second call would watch the same counters.
        let _already_watched = self.blobs.0.set(traffic);
    }

    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode to String");
        text
    }
}

/// Counts and times every request.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let labels = RequestLabels { method, path: path.clone(), status: response.status().as_u16() };
    state.metrics.requests.get_or_create(&labels).inc();
    state.metrics.durations.get_or_create(&RouteLabels { path }).observe(start.elapsed().as_secs_f64());
    response
}

/// The node's metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "metrics", content_type = "application/openmetrics-text", body = String)),
    security(("bearer" = [])))]
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok((
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response())
}
