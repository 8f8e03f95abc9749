//! The webhook over real HTTPS: protocol round trips, HTTP/2, bad input, client certificates,
//! the wire encoding of patches, and deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{TestOptions, TestServer, pod_review, post_json};
use kadmit::core::config::OnError;
use kadmit::core::policy::{PolicyError, PolicyOutcome};
use kadmit::core::{Config, Policy, ReviewContext};
use kadmit::server::state::Limits;
use serde_json::{Value, json};

#[tokio::test]
async fn v1_and_v1beta1_are_answered_in_their_version_with_the_uid() {
    let server = TestServer::start(TestOptions::default()).await;
    let client = server.client();
    for (version, uid) in [
        (
            "admission.k8s.io/v1",
            "8b7d0b1f-0000-4000-8000-000000000001",
        ),
        (
            "admission.k8s.io/v1beta1",
            "8b7d0b1f-0000-4000-8000-000000000002",
        ),
    ] {
        for endpoint in ["/validate", "/mutate"] {
            let (status, answer) =
                post_json(&client, &server.url(endpoint), &pod_review(version, uid)).await;
            assert_eq!(status, 200, "{answer}");
            // Pod Security (on by default, privileged everywhere) records the enforce policy.
            let response = if endpoint == "/validate" {
                json!({"uid": uid, "allowed": true, "auditAnnotations": {"enforce-policy": "privileged:latest"}})
            } else {
                json!({"uid": uid, "allowed": true})
            };
            assert_eq!(
                answer,
                json!({"apiVersion": version, "kind": "AdmissionReview", "response": response}),
                "{endpoint}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn http2_and_http1_keep_alive_are_served() {
    let server = TestServer::start(TestOptions::default()).await;
    let h2 = server.client_builder().build().unwrap();
    let h1 = server.client_builder().http1_only().build().unwrap();
    for (client, version) in [
        (h2, reqwest::Version::HTTP_2),
        (h1, reqwest::Version::HTTP_11),
    ] {
        for i in 0..3 {
            let uid = format!("uid-{i}");
            let response = client
                .post(server.url("/validate?timeout=5s"))
                .header("content-type", "application/json")
                .json(&pod_review("admission.k8s.io/v1", &uid))
                .send()
                .await
                .unwrap();
            assert_eq!(response.version(), version);
            assert_eq!(response.status(), 200);
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["response"]["uid"], uid);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_client_must_trust_the_ca_and_see_the_service_name() {
    let server = TestServer::start(TestOptions::default()).await;
    // A client that trusts another CA refuses the server.
    let other = common::service_certs();
    let stranger = common::client_builder(&[&other.ca_pem], server.addr)
        .build()
        .unwrap();
    let err = stranger
        .post(server.url("/validate"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // The certificate is not valid for other names.
    let client = server
        .client_builder()
        .resolve("other.kadmit.svc", server.addr)
        .build()
        .unwrap();
    let url = format!("https://other.kadmit.svc:{}/validate", server.addr.port());
    assert!(client.post(url).send().await.is_err());
    server.stop().await;
}

/// Sends raw bytes and returns (status, body as JSON).
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = client.request(method, url).body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn bad_input_gets_a_precise_status_and_message() {
    let server = TestServer::start(TestOptions {
        limits: Limits {
            max_body_bytes: 64 * 1024,
            ..Limits::default()
        },
        ..TestOptions::default()
    })
    .await;
    let client = server.client();
    let url = server.url("/validate");
    let json = Some("application/json");
    let good = serde_json::to_vec(&pod_review("admission.k8s.io/v1", "u")).unwrap();

    type Case<'a> = (
        &'a str,
        reqwest::Method,
        Option<&'a str>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("GET", reqwest::Method::GET, json, Vec::new(), 405, "method GET is not allowed: admission reviews are sent with POST"),
        ("PUT", reqwest::Method::PUT, json, good.clone(), 405, "method PUT is not allowed"),
        ("text/plain", reqwest::Method::POST, Some("text/plain"), good.clone(), 415, "content type `text/plain` is not supported"),
        ("no content type", reqwest::Method::POST, None, good.clone(), 415, "content type is missing"),
        ("too large", reqwest::Method::POST, json, vec![b' '; 64 * 1024 + 1], 413, "the body is larger than the limit of 65536 bytes"),
        ("not JSON", reqwest::Method::POST, json, b"{\"apiVersion\": ".to_vec(), 400, "not an admission review: the body is not valid JSON"),
        ("YAML", reqwest::Method::POST, json, b"apiVersion: admission.k8s.io/v1\n".to_vec(), 400, "not an admission review: the body is not valid JSON"),
        ("null", reqwest::Method::POST, json, b"null".to_vec(), 400, "not an admission review: the document: invalid type: null, expected struct AdmissionReview"),
        ("no request", reqwest::Method::POST, json, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "not an admission review: the AdmissionReview has no request"),
        ("no uid", reqwest::Method::POST, json, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod"},"operation":"CREATE"}}"#.to_vec(), 400, "not an admission review: request: missing field `uid`"),
        ("bad operation", reqwest::Method::POST, json, br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"ERASE"}}"#.to_vec(), 400, "request.operation: unknown variant `ERASE`"),
        ("bad version", reqwest::Method::POST, json, br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE"}}"#.to_vec(), 400, "apiVersion `admission.k8s.io/v2` is not supported"),
    ];
    for (name, method, content_type, body, code, message) in cases {
        let (status, answer) = send(&client, method, &url, content_type, body).await;
        assert_eq!(status, code, "{name}: {answer}");
        assert_eq!(answer["kind"], "Status", "{name}");
        assert_eq!(answer["code"], code, "{name}");
        let text = answer["message"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{name}: {text:?} does not contain {message:?}"
        );
    }

    // Chunked (no Content-Length) bodies over the limit are cut off too.
    let chunks = futures::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Unknown paths.
    let (status, answer) = send(
        &client,
        reqwest::Method::POST,
        &server.url("/admit"),
        json,
        good.clone(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("no such endpoint /admit")
    );

    // A bad deadline.
    let (status, answer) = send(
        &client,
        reqwest::Method::POST,
        &server.url("/validate?timeout=soon"),
        json,
        good,
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().contains("timeout=soon"));

    // An object that does not decode as the kind it claims: an AdmissionReview denial, code 400.
    let mut review = pod_review("admission.k8s.io/v1", "bad-object");
    review["request"]["object"]["spec"]["containers"] = json!("nginx");
    let (status, answer) = post_json(&client, &url, &review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["uid"], "bad-object");
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 400);
    assert_eq!(
        answer["response"]["status"]["message"],
        "object does not decode as a v1 Pod: spec.containers: invalid type: string, expected a sequence"
    );
    let mut review = pod_review("admission.k8s.io/v1beta1", "none-object");
    review["request"]["object"] = json!("None");
    let (_, answer) = post_json(&client, &url, &review).await;
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("object does not decode as a v1 Pod: invalid type: string, expected")
    );

    // The server is still healthy and counted what it refused.
    let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "kadmit_admission_requests_rejected_total{endpoint=\"validate\",code=\"405\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "kadmit_admission_requests_rejected_total{endpoint=\"validate\",code=\"413\"} 2"
        ),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(TestOptions {
        limits: Limits {
            body_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        timing: kadmit::server::Timing {
            header_read_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..TestOptions::default()
    })
    .await;
    // Headers that never finish: the connection is closed.
    let mut tls = server.raw_tls().await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nhost: kadmit\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection left open");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that never arrives: 408.
    let mut tls = server.raw_tls().await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nhost: kadmit\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("the body did not arrive in time"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn client_certificate_mode() {
    let client_pki = kadmit::certs::generate_client("system:apiserver", 1).unwrap();
    let server = TestServer::start(TestOptions {
        client_ca_pem: Some(client_pki.ca_pem.clone()),
        ..TestOptions::default()
    })
    .await;
    let review = pod_review("admission.k8s.io/v1", "mtls");
    // With a certificate from the client CA: served.
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client_pki.cert_pem, client_pki.key_pem).as_bytes(),
    )
    .unwrap();
    let client = server.client_builder().identity(identity).build().unwrap();
    let (status, answer) = post_json(&client, &server.url("/validate"), &review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["uid"], "mtls");
    // Without one: the handshake is refused.
    let err = server
        .client()
        .post(server.url("/validate"))
        .json(&review)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // With one from another CA: refused.
    let other = kadmit::certs::generate_client("intruder", 1).unwrap();
    let identity =
        reqwest::Identity::from_pem(format!("{}{}", other.cert_pem, other.key_pem).as_bytes())
            .unwrap();
    let client = server.client_builder().identity(identity).build().unwrap();
    assert!(
        client
            .post(server.url("/validate"))
            .json(&review)
            .send()
            .await
            .is_err()
    );
    server.stop().await;
}

/// Test-only policy: annotates every pod on /mutate, with a `/` in the key.
struct AnnotatePolicy;

impl Policy for AnnotatePolicy {
    fn name(&self) -> &str {
        "test-annotate"
    }

    fn mutate(&self, _ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        Ok(PolicyOutcome {
            patch: serde_json::from_value(json!([
                {"op": "add", "path": "/metadata/annotations", "value": {}},
                {"op": "add", "path": "/metadata/annotations/example.com~1touched", "value": "yes"}
            ]))
            .unwrap(),
            warnings: vec!["test-annotate touched the pod".into()],
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn the_patch_is_base64_json_patch_on_the_wire() {
    let server = TestServer::start(TestOptions {
        extra_policies: vec![Arc::new(AnnotatePolicy)],
        ..TestOptions::default()
    })
    .await;
    let review = pod_review("admission.k8s.io/v1", "patch-me");
    let response = server
        .client()
        .post(server.url("/mutate"))
        .header("content-type", "application/json")
        .json(&review)
        .send()
        .await
        .unwrap();
    let wire = response.text().await.unwrap();
    let answer: Value = serde_json::from_str(&wire).unwrap();
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let patch = answer["response"]["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("patch is not a string on the wire: {wire}"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let ops: json_patch::Patch = serde_json::from_slice(&decoded).unwrap();
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &ops).unwrap();
    assert_eq!(
        object["metadata"]["annotations"]["example.com/touched"],
        "yes"
    );
    assert_eq!(
        answer["response"]["warnings"],
        json!(["test-annotate touched the pod"])
    );

    // /validate never patches.
    let (_, answer) = post_json(&server.client(), &server.url("/validate"), &review).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert!(answer["response"].get("patchType").is_none(), "{answer}");
    server.stop().await;
}

/// Test-only policy: blocks until released (at most 30 s), like an authorizer that hangs.
#[derive(Clone, Default)]
struct HangPolicy {
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl HangPolicy {
    fn release(&self) {
        let (lock, cvar) = &*self.released;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
}

impl Policy for HangPolicy {
    fn name(&self) -> &str {
        "test-hang"
    }

    fn may_block(
        &self,
        _request: &kadmit::core::AdmissionRequest,
        _object: Option<&kadmit::core::review::TypedObject>,
    ) -> bool {
        true
    }

    fn validate(&self, _ctx: &ReviewContext<'_>) -> Result<PolicyOutcome, PolicyError> {
        let (lock, cvar) = &*self.released;
        let guard = lock.lock().unwrap();
        let _ = cvar
            .wait_timeout_while(guard, Duration::from_secs(30), |released| !*released)
            .unwrap();
        Ok(PolicyOutcome::default())
    }
}

#[tokio::test]
async fn a_policy_that_never_finishes_is_answered_before_the_deadline() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let hang = HangPolicy::default();
        let mut config = Config::default();
        config.failure.on_error = on_error;
        let server = TestServer::start(TestOptions {
            config,
            extra_policies: vec![Arc::new(hang.clone())],
            ..TestOptions::default()
        })
        .await;
        let client = server.client();
        for (timeout, limit) in [
            ("1s", Duration::from_secs(1)),
            ("2s", Duration::from_secs(2)),
        ] {
            let started = Instant::now();
            let (status, answer) = post_json(
                &client,
                &server.url(&format!("/validate?timeout={timeout}")),
                &pod_review("admission.k8s.io/v1", "slow"),
            )
            .await;
            let elapsed = started.elapsed();
            assert!(
                elapsed < limit,
                "answered after {elapsed:?}, deadline {limit:?}"
            );
            assert_eq!(status, 200);
            let response = &answer["response"];
            assert_eq!(response["uid"], "slow");
            match on_error {
                OnError::Deny => {
                    assert_eq!(response["allowed"], false);
                    assert_eq!(response["status"]["code"], 500);
                    assert_eq!(
                        response["status"]["message"],
                        format!(
                            "kadmit policy test-hang could not decide: it did not finish before the request's deadline (timeout {timeout}) (failure.onError: deny)"
                        )
                    );
                }
                OnError::Allow => {
                    assert_eq!(response["allowed"], true);
                    assert_eq!(
                        response["warnings"],
                        json!([format!(
                            "kadmit policy test-hang could not decide: it did not finish before the request's deadline (timeout {timeout}); allowed (failure.onError: allow)"
                        )])
                    );
                }
            }
        }
        let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("kadmit_admission_deadline_expired_total{endpoint=\"validate\"} 2"),
            "{metrics}"
        );
        hang.release();
        server.stop().await;
    }
}

#[tokio::test]
async fn probes_and_metrics() {
    let server = TestServer::start(TestOptions::default()).await;
    let base = format!("http://{}", server.metrics_addr);
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    post_json(
        &server.client(),
        &server.url("/validate"),
        &pod_review("admission.k8s.io/v1", "m"),
    )
    .await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "kadmit_admission_requests_total{endpoint=\"validate\",kind=\"Pod\",operation=\"CREATE\",decision=\"allowed\"} 1",
        "kadmit_admission_request_duration_seconds_bucket{le=\"30.0\",endpoint=\"validate\"} 1",
        "kadmit_admission_requests_in_flight{endpoint=\"validate\"} 0",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    server.stop().await;
}
