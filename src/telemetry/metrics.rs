//! Prometheus metrics, served on the metrics port at `/metrics`.
//!
//! Label values are bounded: every value that comes from a request (kind, subresource) is taken
//! from a fixed set, anything else reported as `other`, so a client sending made-up values cannot
//! grow the series count (and /metrics with it). The other labels are bounded by construction:
//! endpoints, operations, decisions, results and reasons are constants, HTTP codes are the ones
//! kadmit answers with, policy names come from the configuration, and Pod Security's
//! `policy_version` is `latest`, `future` or a `v1.N` kadmit knows.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds, from half a millisecond to the API server's 30 s maximum.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// Kinds reported by name; anything else is `other`.
const KNOWN_KINDS: &[&str] = &[
    "Pod",
    "Namespace",
    "ReplicationController",
    "PodTemplate",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
];

/// Subresources reported by name in the Pod Security metrics; anything else is `other`.
///
/// Those of pods that Pod Security sees (the empty string is the pod itself) and those of the
/// workload resources (`status`, `scale`); the API server only sends existing subresources, but
/// a review can be posted to kadmit directly with any string.
const KNOWN_SUBRESOURCES: &[&str] = &[
    "",
    "ephemeralcontainers",
    "status",
    "binding",
    "eviction",
    "exec",
    "attach",
    "portforward",
    "log",
    "proxy",
    "resize",
    "scale",
];

/// `value` if it is in `known`, else `other`: a label value from a fixed set.
fn bounded(known: &[&'static str], value: &str) -> &'static str {
    known
        .iter()
        .copied()
        .find(|k| *k == value)
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    kind: &'static str,
    operation: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    endpoint: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    endpoint: &'static str,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Upstream Pod Security Admission's labels, kept verbatim so existing dashboards work.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PsaEvaluationLabels {
    decision: &'static str,
    policy_level: &'static str,
    policy_version: String,
    mode: &'static str,
    request_operation: &'static str,
    resource: &'static str,
    subresource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PsaRequestLabels {
    request_operation: &'static str,
    resource: &'static str,
    subresource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PsaErrorLabels {
    fatal: &'static str,
    request_operation: &'static str,
    resource: &'static str,
    subresource: &'static str,
}

/// Every instrument kadmit reports.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<EndpointLabels, Histogram>,
    in_flight: Family<EndpointLabels, Gauge>,
    rejected: Family<RejectLabels, Counter>,
    deadline_expired: Family<EndpointLabels, Counter>,
    policy_errors: Family<PolicyLabels, Counter>,
    cert_reloads: Family<ResultLabels, Counter>,
    psa_evaluations: Family<PsaEvaluationLabels, Counter>,
    psa_exemptions: Family<PsaRequestLabels, Counter>,
    psa_errors: Family<PsaErrorLabels, Counter>,
    capture_records: Counter,
    capture_dropped: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers all instruments.
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        let psa_evaluations = Family::<PsaEvaluationLabels, Counter>::default();
        root.register(
            "pod_security_evaluations",
            "Number of policy evaluations that occurred, not counting ignored or exempt requests.",
            psa_evaluations.clone(),
        );
        let psa_exemptions = Family::<PsaRequestLabels, Counter>::default();
        root.register(
            "pod_security_exemptions",
            "Number of exempt requests, not counting ignored or out of scope requests.",
            psa_exemptions.clone(),
        );
        let psa_errors = Family::<PsaErrorLabels, Counter>::default();
        root.register(
            "pod_security_errors",
            "Number of errors preventing normal evaluation. Non-fatal errors may result in the latest restricted profile being used for evaluation.",
            psa_errors.clone(),
        );
        let registry = root.sub_registry_with_prefix("kadmit");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by endpoint, kind, operation and decision (allowed or denied)",
            requests.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "admission_request_duration_seconds",
            "Time from receiving a review's headers to sending its answer",
            duration.clone(),
        );
        let in_flight = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "admission_requests_in_flight",
            "Admission requests being read or evaluated",
            in_flight.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "admission_requests_rejected",
            "Requests answered with an HTTP error instead of an AdmissionReview (bad method, content type, size, body)",
            rejected.clone(),
        );
        let deadline_expired = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "admission_deadline_expired",
            "Reviews whose policies did not finish before the request's deadline and were answered per failure.onError",
            deadline_expired.clone(),
        );
        let policy_errors = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_errors",
            "Policy evaluations that could not decide and were answered per failure.onError",
            policy_errors.clone(),
        );
        let cert_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_certificate_reloads",
            "Serving certificate changes seen on disk, by result (success: now served; failure: kept the previous one)",
            cert_reloads.clone(),
        );
        let capture_records = Counter::default();
        registry.register(
            "capture_records",
            "Reviews written to capture files (--capture-dir)",
            capture_records.clone(),
        );
        let capture_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "capture_dropped",
            "Sampled reviews not captured, by reason (queue_full: the writer was behind; write_error: the file could not be written; too_large: the record exceeds --capture-max-file-bytes; too_deep: the review is nested deeper than 126 levels); admission is never affected",
            capture_dropped.clone(),
        );
        Metrics {
            registry: Mutex::new(root),
            requests,
            duration,
            in_flight,
            rejected,
            deadline_expired,
            policy_errors,
            cert_reloads,
            psa_evaluations,
            psa_exemptions,
            psa_errors,
            capture_records,
            capture_dropped,
        }
    }

    /// Records what a policy reported.
    pub fn policy_event(&self, event: &kadmit_core::policy::PolicyEvent) {
        use kadmit_core::policy::PolicyEvent;
        use kadmit_core::policy::pod_security::MetricEvent;
        let _previous = match event {
            PolicyEvent::PodSecurity(MetricEvent::Evaluation {
                decision,
                level,
                version,
                mode,
                request,
            }) => self
                .psa_evaluations
                .get_or_create(&PsaEvaluationLabels {
                    decision,
                    policy_level: level.as_str(),
                    policy_version: version.clone(),
                    mode,
                    request_operation: request.operation,
                    resource: request.resource,
                    subresource: bounded(KNOWN_SUBRESOURCES, &request.subresource),
                })
                .inc(),
            PolicyEvent::PodSecurity(MetricEvent::Exemption(request)) => self
                .psa_exemptions
                .get_or_create(&PsaRequestLabels {
                    request_operation: request.operation,
                    resource: request.resource,
                    subresource: bounded(KNOWN_SUBRESOURCES, &request.subresource),
                })
                .inc(),
            PolicyEvent::PodSecurity(MetricEvent::Error { fatal, request }) => self
                .psa_errors
                .get_or_create(&PsaErrorLabels {
                    fatal: if *fatal { "true" } else { "false" },
                    request_operation: request.operation,
                    resource: request.resource,
                    subresource: bounded(KNOWN_SUBRESOURCES, &request.subresource),
                })
                .inc(),
            _ => 0,
        };
    }

    /// Counts an answered review.
    pub fn request(
        &self,
        endpoint: &'static str,
        kind: &str,
        operation: &'static str,
        allowed: bool,
        seconds: f64,
    ) {
        let kind = bounded(KNOWN_KINDS, kind);
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                kind,
                operation,
                decision: if allowed { "allowed" } else { "denied" },
            })
            .inc();
        self.observe(endpoint, seconds);
    }

    /// Records the duration of any answered request, review or not.
    pub fn observe(&self, endpoint: &'static str, seconds: f64) {
        self.duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    /// Counts a request answered with an HTTP error status.
    pub fn rejected(&self, endpoint: &'static str, code: u16) {
        self.rejected
            .get_or_create(&RejectLabels { endpoint, code })
            .inc();
    }

    /// Counts a deadline expiry.
    pub fn deadline_expired(&self, endpoint: &'static str) {
        self.deadline_expired
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
    }

    /// Counts a policy that could not decide.
    pub fn policy_error(&self, endpoint: &'static str, policy: &str) {
        self.policy_errors
            .get_or_create(&PolicyLabels {
                endpoint,
                policy: policy.to_owned(),
            })
            .inc();
    }

    /// Counts a certificate reload attempt.
    pub fn cert_reload(&self, result: &'static str) {
        self.cert_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Shows the capture drop reasons at zero once capture is on.
    pub fn capture_init(&self) {
        for reason in ["queue_full", "write_error", "too_large", "too_deep"] {
            let _ = self.capture_dropped.get_or_create(&ReasonLabels { reason });
        }
    }

    /// Counts a review written to a capture file.
    pub fn capture_recorded(&self) {
        self.capture_records.inc();
    }

    /// Counts a sampled review that was not captured.
    pub fn capture_dropped(&self, reason: &'static str) {
        self.capture_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Marks a request in flight until the guard drops.
    pub fn in_flight(&self, endpoint: &'static str) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_create_owned(&EndpointLabels { endpoint });
        gauge.inc();
        InFlight { gauge }
    }

    /// The Prometheus text exposition of every instrument.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Decrements the in-flight gauge when dropped, whichever way the request ends.
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kadmit_core::config::Level;
    use kadmit_core::policy::PolicyEvent;
    use kadmit_core::policy::pod_security::{MetricEvent, MetricRequest};

    fn request(subresource: &str) -> MetricRequest {
        MetricRequest {
            operation: "create",
            resource: "pod",
            subresource: subresource.to_owned(),
        }
    }

    /// Every line of the exposition that is a sample, not a comment.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn request_supplied_label_values_come_from_a_fixed_set() {
        let metrics = Metrics::new();
        for n in 0..500 {
            let made_up = format!("sub{n}");
            metrics.policy_event(&PolicyEvent::PodSecurity(MetricEvent::Evaluation {
                decision: "allow",
                level: Level::Privileged,
                version: "latest".to_owned(),
                mode: "enforce",
                request: request(&made_up),
            }));
            metrics.policy_event(&PolicyEvent::PodSecurity(MetricEvent::Exemption(request(
                &made_up,
            ))));
            metrics.policy_event(&PolicyEvent::PodSecurity(MetricEvent::Error {
                fatal: true,
                request: request(&made_up),
            }));
            metrics.request("validate", &format!("Kind{n}"), "CREATE", true, 0.001);
        }
        // Known values keep their names, including the pod itself (empty).
        for known in ["", "ephemeralcontainers", "resize", "status", "scale"] {
            metrics.policy_event(&PolicyEvent::PodSecurity(MetricEvent::Exemption(request(
                known,
            ))));
        }
        let text = metrics.encode();
        assert!(!text.contains("sub4"), "{text}");
        assert!(!text.contains("Kind4"), "{text}");
        for expected in [
            r#"pod_security_evaluations_total{decision="allow",policy_level="privileged",policy_version="latest",mode="enforce",request_operation="create",resource="pod",subresource="other"} 500"#,
            r#"pod_security_exemptions_total{request_operation="create",resource="pod",subresource="other"} 500"#,
            r#"pod_security_errors_total{fatal="true",request_operation="create",resource="pod",subresource="other"} 500"#,
            r#"kadmit_admission_requests_total{endpoint="validate",kind="other",operation="CREATE",decision="allowed"} 500"#,
            r#"pod_security_exemptions_total{request_operation="create",resource="pod",subresource=""} 1"#,
            r#"pod_security_exemptions_total{request_operation="create",resource="pod",subresource="ephemeralcontainers"} 1"#,
            r#"pod_security_exemptions_total{request_operation="create",resource="pod",subresource="scale"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected}\n{text}");
        }
        // 3 Pod Security series for `other` and the 5 known exemptions; 1 request series.
        let series = |prefix: &str| {
            samples(&text)
                .iter()
                .filter(|l| l.starts_with(prefix))
                .count()
        };
        assert_eq!(series("pod_security_"), 3 + 5, "{text}");
        assert_eq!(series("kadmit_admission_requests_total"), 1, "{text}");
    }
}
