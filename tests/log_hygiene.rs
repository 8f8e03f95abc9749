//! Secrets hygiene of the log: `kadmit serve` at its default level (`info`), every policy on,
//! is sent reviews carrying a secret value wherever one can hide — a Secret's data, a pod's env
//! value and annotation, a mistyped field that fails to decode, a body that is not JSON — and is
//! made to deny and refuse some of them, which it logs at info. No line of its log may contain
//! any of the values. (Captures redacting Secrets are tested in `tests/capture.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

const SECRET: &str = "s3cr3t-hunter2-value";

fn review(uid: &str, kind: &str, namespace: &str, object: Value) -> Value {
    let (group, version) = match kind {
        "Deployment" => ("apps", "v1"),
        _ => ("", "v1"),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
        "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "alice"},
        "object": object}})
}

fn pod(security_context: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "annotations": {"vault/token": SECRET}},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1",
            "env": [{"name": "PASSWORD", "value": SECRET}],
            "args": ["--password", SECRET],
            "securityContext": security_context}]}})
}

#[test]
fn no_secret_value_is_logged_at_info() {
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
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = common::client_builder(&[&certs.ca_pem], server.webhook)
            .build()
            .unwrap();
        let url = |path: &str| {
            format!(
                "https://{}:{}{path}",
                common::SERVICE_NAME,
                server.webhook.port()
            )
        };
        let reviews = [
            // A Secret: allowed (no policy reads Secrets).
            (
                review(
                    "secret",
                    "Secret",
                    "shop",
                    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                           "data": {"password": encoded}, "stringData": {"token": SECRET}}),
                ),
                (true, true),
            ),
            // A privileged pod: denied by Pod Security restricted (logged at info), mutated.
            (
                review("privileged", "Pod", "shop", pod(json!({"privileged": true}))),
                (false, true),
            ),
            // A mistyped field: the object does not decode, denied with code 400.
            (
                review("mistyped", "Pod", "shop", pod(json!({"runAsUser": SECRET}))),
                (false, false),
            ),
            // The same in a workload's pod template.
            (
                review(
                    "workload",
                    "Deployment",
                    "shop",
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                           "spec": {"selector": {}, "template": pod(json!({"runAsGroup": SECRET}))}}),
                ),
                (false, false),
            ),
        ];
        for (review, (validate, mutate)) in &reviews {
            for (endpoint, allowed) in [("/validate", validate), ("/mutate", mutate)] {
                let (status, answer) = common::post_json(&client, &url(endpoint), review).await;
                assert_eq!(status, 200, "{answer}");
                assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
                assert_eq!(
                    answer["response"]["allowed"], *allowed,
                    "{endpoint} {answer}"
                );
                let message = answer["response"]["status"]["message"].as_str().unwrap_or("");
                assert!(!message.contains(SECRET), "{endpoint}: {message}");
            }
        }
        // Bodies refused before any policy runs: not JSON, and JSON that is not a review.
        for body in [
            format!(r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{"uid": "{SECRET}"#),
            format!(r#"{{"apiVersion": "{SECRET}", "kind": "AdmissionReview", "request": {{}}}}"#),
            format!(r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{"uid": "u", "kind": {{"group": "", "version": "v1", "kind": "Pod"}}, "operation": "CREATE", "dryRun": "{SECRET}"}}}}"#),
        ] {
            let response = client
                .post(url("/validate"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400);
        }
    });
    // The log is written by a thread reading the child's stderr: wait for the last refusal.
    let log = || server.log.lock().unwrap().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log()
        .iter()
        .filter(|line| line.contains("request rejected"))
        .count()
        < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = log();
    // What the server logs at info about these reviews is there to be checked.
    let count = |what: &str| log.iter().filter(|line| line.contains(what)).count();
    assert_eq!(count("request rejected"), 3, "{log:#?}");
    // privileged at /validate; mistyped and workload at both.
    assert_eq!(count("\"denied\""), 5, "{log:#?}");
    // Every line is JSON whose objects have unique keys (a repeated key is silently dropped by
    // most log tooling), and a denial says both what happened and the answer's message.
    for line in &log {
        if let Err(err) = serde_json::from_str::<UniqueKeys>(line) {
            panic!("log line with repeated keys ({err}): {line}");
        }
    }
    let denial = log
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|line| line["fields"]["message"] == "denied")
        .expect("a denial is logged");
    assert!(
        (denial["fields"]["status_message"].as_str().unwrap_or(""))
            .contains("violates PodSecurity"),
        "{denial}"
    );
    // The test's reviews name no object in the request (as for a generated name): empty.
    assert_eq!(denial["span"]["object_name"], "", "{denial}");
    assert_eq!(denial["span"]["uid"], "privileged", "{denial}");
    let leaks: Vec<&String> = log
        .iter()
        .filter(|line| line.contains(SECRET) || line.contains(&encoded))
        .collect();
    assert!(leaks.is_empty(), "secret values in the log: {leaks:#?}");
}

/// A JSON value whose objects never repeat a key (serde_json's `Value` keeps the last of them).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("repeated key `{key}`")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}
