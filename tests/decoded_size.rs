//! Issue 27, items 1 and 3: memory follows what decoding builds, and large reviews are
//! evaluated off the I/O workers.
//!
//! The worst cases are reviews of up to 3 MiB (the API server's request limit) that decode as
//! a Pod review, each with one long list of empty objects (or strings, or numbers) in a list
//! the model keeps, a map of many keys, or one long string. Before, a 1.6 MB review of 50 000
//! `{"name": "vN", "emptyDir": {}}` volumes took `kadmit serve` from 20 MiB to 404 MiB, and
//! 8 MB of `{}` containers past 8 GiB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestOptions, TestServer};
use kadmit::core::Config;
use serde_json::Value;

/// The API server's request limit.
const MAX_REQUEST: usize = 3 * 1024 * 1024;

/// A container that passes restricted.
const COMPLIANT: &str = r#"{"name":"app","image":"registry.example.com/app:1","securityContext":{"allowPrivilegeEscalation":false,"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"},"capabilities":{"drop":["ALL"]}}}"#;

/// A pod review whose object is `pod` (JSON text), sent for `endpoint`.
fn review(uid: &str, pod: &str) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"{uid}","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"default","operation":"CREATE","userInfo":{{"username":"alice"}},"object":{pod}}}}}"#
    )
    .into_bytes()
}

/// `item` repeated (comma-separated) as often as fits in a review of at most `MAX_REQUEST`
/// bytes around `before` and `after`; `numbered` items get their index in place of `#`.
fn filled(before: &str, item: &str, after: &str) -> String {
    let room = MAX_REQUEST - 1024 - before.len() - after.len();
    let mut list = String::with_capacity(room);
    let mut i = 0u64;
    loop {
        let next = item.replace('#', &i.to_string());
        if list.len() + next.len() + 1 > room {
            break;
        }
        if i > 0 {
            list.push(',');
        }
        list.push_str(&next);
        i += 1;
    }
    format!("{before}{list}{after}")
}

/// The worst cases: one per list, map and string the pod model keeps, each at 3 MiB.
fn worst_cases() -> Vec<(&'static str, String)> {
    let meta = r#""apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"}"#;
    // Around a list (or map) member of the spec, after the compliant container.
    let in_spec = |open: &str, close: &str| {
        (
            format!(r#"{{{meta},"spec":{{"containers":[{COMPLIANT}],{open}"#),
            format!("{close}}}}}"),
        )
    };
    // Around a list (or map) member of a second container.
    let in_container = |open: &str, close: &str| {
        (
            format!(r#"{{{meta},"spec":{{"containers":[{COMPLIANT},{{"name":"c",{open}"#),
            format!("{close}}}]}}}}"),
        )
    };
    // Around the pod's annotations.
    let in_annotations = |open: &str, close: &str| {
        (
            format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p","annotations":{{{open}"#
            ),
            format!(r#"{close}}}}},"spec":{{"containers":[{COMPLIANT}]}}}}"#),
        )
    };
    let shapes: Vec<(&'static str, (String, String), &str)> = vec![
        (
            "containers",
            (
                format!(r#"{{{meta},"spec":{{"containers":[{COMPLIANT},"#),
                "]}}".to_owned(),
            ),
            "{}",
        ),
        (
            "initContainers",
            in_spec(r#""initContainers":["#, "]"),
            "{}",
        ),
        (
            "ephemeralContainers",
            in_spec(r#""ephemeralContainers":["#, "]"),
            "{}",
        ),
        (
            "volumes",
            in_spec(r#""volumes":["#, "]"),
            r#"{"name":"v#","emptyDir":{}}"#,
        ),
        ("empty volumes", in_spec(r#""volumes":["#, "]"), "{}"),
        (
            "imagePullSecrets",
            in_spec(r#""imagePullSecrets":["#, "]"),
            "{}",
        ),
        (
            "sysctls",
            in_spec(r#""securityContext":{"sysctls":["#, "]}"),
            "{}",
        ),
        (
            "supplementalGroups",
            in_spec(r#""securityContext":{"supplementalGroups":["#, "]}"),
            "0",
        ),
        ("ports", in_container(r#""ports":["#, "]"), "{}"),
        (
            "capabilities.drop",
            in_container(r#""securityContext":{"capabilities":{"drop":["#, "]}}"),
            r#""""#,
        ),
        (
            "limits",
            in_container(r#""resources":{"limits":{"#, "}}"),
            r#""r#":"1""#,
        ),
        (
            "httpHeaders",
            in_container(
                r#""livenessProbe":{"httpGet":{"port":80,"httpHeaders":["#,
                "]}}",
            ),
            "{}",
        ),
        (
            "exec command",
            in_container(r#""lifecycle":{"postStart":{"exec":{"command":["#, "]}}}"),
            r#""""#,
        ),
        ("annotations", in_annotations("", ""), r#""a#":"""#),
        (
            "labels",
            (
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"#.to_owned(),
                format!(r#"}}}},"spec":{{"containers":[{COMPLIANT}]}}}}"#),
            ),
            r#""l#":"v""#,
        ),
    ];
    let mut cases: Vec<(&'static str, String)> = shapes
        .into_iter()
        .map(|(name, (before, after), item)| (name, filled(&before, item, &after)))
        .collect();
    let (before, after) = in_annotations(r#""a":""#, r#"""#);
    let long = "x".repeat(MAX_REQUEST - 2048 - before.len() - after.len());
    cases.push(("long annotation", format!("{before}{long}{after}")));
    for (name, pod) in &cases {
        assert!(review(name, pod).len() <= MAX_REQUEST, "{name}");
    }
    cases
}

fn full_policies() -> Config {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    Config::from_yaml(
        &std::fs::read_to_string(repo.join("scripts/bench-full-policies.yaml")).unwrap(),
    )
    .unwrap()
}

/// Every worst case is a JSON pod (the builders above are right), and each is answered with an
/// AdmissionReview on both endpoints: allowed or denied, and when denied for its size, with a
/// message that names the list where decoding stopped and the limit.
#[tokio::test]
async fn every_worst_case_is_answered_on_both_endpoints() {
    let server = TestServer::start(TestOptions {
        config: full_policies(),
        ..TestOptions::default()
    })
    .await;
    let client = server.client();
    let mut too_large = 0;
    for (name, pod) in worst_cases() {
        let parsed: Value = serde_json::from_str(&pod).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed["kind"], "Pod", "{name}");
        for endpoint in ["validate", "mutate"] {
            let response = client
                .post(server.url(&format!("/{endpoint}")))
                .header("content-type", "application/json")
                .body(review(name, &pod))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{name} /{endpoint}");
            let answer: Value = response.json().await.unwrap();
            let answer = &answer["response"];
            assert_eq!(answer["uid"], name, "{name} /{endpoint}");
            if answer["allowed"] == false {
                let message = answer["status"]["message"].as_str().unwrap();
                if message.contains("too large") {
                    too_large += 1;
                    assert_eq!(answer["status"]["code"], 400, "{name}: {message}");
                    assert!(
                        message.starts_with("object is too large to evaluate: ")
                            && message.contains(
                                "the object takes more than 16777216 bytes of memory to evaluate"
                            ),
                        "{name} /{endpoint}: {message}"
                    );
                    assert!(message.len() < 300, "{name}: {message}");
                }
            }
        }
    }
    // The lists of empty objects go past the limit; 3 MiB of volumes that name a source does
    // not (each is its name and a byte per source).
    assert!(too_large >= 8, "{too_large}");
    // The first container list names its place.
    let (_, pod) = &worst_cases()[0];
    let (status, answer) = common::post_json(
        &client,
        &server.url("/validate"),
        &serde_json::from_slice(&review("c", pod)).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains(": spec.containers: "), "{message}");
    // Whatever failure.onError says: a property of the object, not a failure to decide.
    server.stop().await;
}

/// A review of 50 000 volumes that each name a source (the 1.6 MB review that took 404 MiB)
/// is decoded and allowed at restricted; its decoded size stays far below the limit.
#[tokio::test]
async fn fifty_thousand_volumes_are_allowed() {
    let server = TestServer::start(TestOptions {
        config: full_policies(),
        ..TestOptions::default()
    })
    .await;
    let volumes: Vec<String> = (0..50_000)
        .map(|i| format!(r#"{{"name":"v{i}","emptyDir":{{}}}}"#))
        .collect();
    let pod = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p","namespace":"default"}},"spec":{{"containers":[{COMPLIANT}],"volumes":[{}]}}}}"#,
        volumes.join(",")
    );
    let response = server
        .client()
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(review("vols", &pod))
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    server.stop().await;
}

/// The stated bound: sixteen worst cases at once against `kadmit serve` (the built binary, every
/// policy on, default limits) are all answered with an AdmissionReview (none 503, none dropped),
/// `/healthz` answers within its probe timeout (1 s) throughout, and the process's peak RSS
/// stays at most 200 MiB.
#[test]
fn sixteen_worst_cases_at_once_stay_within_200_mib() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let certs = common::service_certs();
    std::fs::write(dir.path().join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &certs.key_pem).unwrap();
    let server = common::process::spawn_serve(&[
        "--config".as_ref(),
        repo.join("scripts/bench-full-policies.yaml").as_os_str(),
        "--cluster".as_ref(),
        repo.join("scripts/bench-cluster.yaml").as_os_str(),
        "--tls-cert-file".as_ref(),
        dir.path().join("tls.crt").as_os_str(),
        "--tls-private-key-file".as_ref(),
        dir.path().join("tls.key").as_os_str(),
    ]);
    let cases = worst_cases();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slowest_probe = runtime.block_on(async {
        let client = common::client_builder(&[&certs.ca_pem], server.webhook)
            .http1_only()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let url = |endpoint: &str| {
            format!(
                "https://{}:{}/{endpoint}?timeout=30s",
                common::SERVICE_NAME,
                server.webhook.port()
            )
        };
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = tokio::spawn({
            let done = std::sync::Arc::clone(&done);
            let healthz = format!("http://{}/healthz", server.metrics);
            async move {
                let client = reqwest::Client::new();
                let mut slowest = Duration::ZERO;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = Instant::now();
                    let response = client.get(&healthz).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    slowest = slowest.max(sent.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                slowest
            }
        });
        let sends = cases.iter().take(16).enumerate().map(|(i, (name, pod))| {
            let client = client.clone();
            let endpoint = if i % 2 == 0 { "validate" } else { "mutate" };
            let (url, body) = (url(endpoint), review(name, pod));
            async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let answer: Value = response.json().await.unwrap();
                (*name, status, answer)
            }
        });
        for (name, status, answer) in futures::future::join_all(sends).await {
            assert_eq!(status, 200, "{name}: {answer}");
            assert_eq!(answer["response"]["uid"], name);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        probe.await.unwrap()
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    println!(
        "{} worst cases at once: peak RSS {} MiB, slowest /healthz {slowest_probe:?}",
        cases.len().min(16),
        peak_kib / 1024
    );
    assert!(cases.len() >= 16, "{}", cases.len());
    assert!(peak_kib <= 200 * 1024, "peak RSS {} MiB", peak_kib / 1024);
    assert!(
        slowest_probe < Duration::from_secs(1),
        "slowest /healthz {slowest_probe:?}"
    );
}
