//! Secrets hygiene of the log: `kadmit serve` at its default level (`info`), every policy on,
//! is sent reviews carrying a secret value wherever one can hide — a Secret's data, a pod's env
//! value and annotation, a mistyped field that fails to decode, a body that is not JSON — and is
//! made to deny and refuse some of them, which it logs at info. No line of its log may contain
//! any of the values. (Captures redacting Secrets are tested in `tests/capture.rs`.)
//!
//! Nor can a client forge log lines, colour the reader's terminal or flood the log: values from
//! the request are escaped in the text format and exact in the JSON format, and long messages
//! are cut to a bound that states their full length.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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

/// A uid and an apiVersion that try to end the log line, write one of their own and turn the
/// rest of the reader's terminal red.
const FORGED: &str =
    "\n2026-12-05T00:00:00.000000Z  INFO kadmit: FORGED all clear \x1b[31m\"q\" \\ ";

/// `kadmit serve` with every policy on, its certificates in `dir`.
fn serve_args(dir: &Path, certs: &kadmit::certs::GeneratedCerts) -> Vec<OsString> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(dir.join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &certs.key_pem).unwrap();
    [
        "--config".into(),
        repo.join("scripts/bench-full-policies.yaml")
            .into_os_string(),
        "--cluster".into(),
        repo.join("scripts/bench-cluster.yaml").into_os_string(),
        "--tls-cert-file".into(),
        dir.join("tls.crt").into_os_string(),
        "--tls-private-key-file".into(),
        dir.join("tls.key").into_os_string(),
    ]
    .into()
}

/// `kadmit --log-format text serve`, its log kept byte for byte (`tests/common/process.rs`
/// reads the JSON format).
struct TextServe {
    child: Child,
    webhook: std::net::SocketAddr,
    /// Every line of stderr, without its `\n`, bytes as written.
    log: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Drop for TextServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_text_serve(args: &[OsString]) -> TextServe {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kadmit"))
        .args(["--log-format", "text", "serve", "--bind", "127.0.0.1:0"])
        .args(["--metrics-bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&log);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        loop {
            let mut line = Vec::new();
            match stderr.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            kept.lock().unwrap().push(line);
            // `... INFO kadmit::cli::serve: serving webhook=127.0.0.1:PORT metrics=...`
            if !sent && text.contains(" serving ") {
                let webhook = text
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix("webhook="))
                    .map(|address| address.parse().unwrap());
                if let Some(webhook) = webhook {
                    let _ = tx.send(webhook);
                    sent = true;
                }
            }
        }
    });
    let webhook = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("kadmit serve --log-format text reports its address within a minute");
    TextServe {
        child,
        webhook,
        log,
    }
}

/// A privileged pod, denied at `/validate` (logged at info with the review's uid).
fn privileged_review(uid: &str, container: &str) -> Value {
    let mut review = review(
        uid,
        "Pod",
        "shop",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"containers": [{"name": container, "image": "registry.example.com/app:1",
                   "securityContext": {"privileged": true}}]}}),
    );
    review["request"]["name"] = json!("web");
    review
}

/// A body refused with 400, whose message quotes its `apiVersion`.
fn bad_api_version(api_version: &str) -> String {
    json!({"apiVersion": api_version, "kind": "AdmissionReview",
           "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                       "operation": "CREATE"}})
    .to_string()
}

/// Sends the forging uid (in a review that is denied) and the forging apiVersion (in a body
/// that is refused) to `/validate`.
async fn send_forgeries(client: &reqwest::Client, url: &str) {
    let uid = format!("evil{FORGED}");
    let (status, answer) = common::post_json(client, url, &privileged_review(&uid, "app")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"]["uid"], uid.as_str());
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(bad_api_version(&format!("v9{FORGED}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

/// Waits (at most 10 s) until `count` lines of `log` contain `what`.
fn wait_for<T: AsRef<[u8]>>(log: &Mutex<Vec<T>>, what: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let seen = log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| String::from_utf8_lossy(line.as_ref()).contains(what))
            .count();
        if seen >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_cannot_forge_or_colour_text_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::service_certs();
    let server = spawn_text_serve(&serve_args(dir.path(), &certs));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = common::client_builder(&[&certs.ca_pem], server.webhook)
            .build()
            .unwrap();
        let url = format!(
            "https://{}:{}/validate",
            common::SERVICE_NAME,
            server.webhook.port()
        );
        send_forgeries(&client, &url).await;
    });
    wait_for(&server.log, "request rejected", 1);
    let log = server.log.lock().unwrap().clone();
    let lines: Vec<String> = log
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    // No ESC byte at all (stderr is a pipe: no colours of kadmit's own either).
    assert!(!log.iter().flatten().any(|b| *b == 0x1b), "{lines:#?}");
    // Every line is one of kadmit's: it starts with kadmit's timestamp and level. A forged line
    // would start with the text after the `\n`, its fake timestamp behind a space or a quote.
    for line in &lines {
        let (stamp, rest) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            stamp.len() >= 20
                && stamp.starts_with("20")
                && stamp.ends_with('Z')
                && !stamp.contains("2026-12-05T00:00:00.000000Z"),
            "not a line of kadmit's: {line:?}\n{lines:#?}"
        );
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .iter()
                .any(|level| rest.trim_start().starts_with(level)),
            "{line:?}"
        );
    }
    // One line per event: the denial (the uid in its span) and the refusal (the apiVersion in
    // its reason), each escaped on its own line.
    let forged: Vec<&String> = lines.iter().filter(|l| l.contains("FORGED")).collect();
    assert_eq!(forged.len(), 2, "{lines:#?}");
    let escaped =
        r#"\n2026-12-05T00:00:00.000000Z  INFO kadmit: FORGED all clear \u{1b}[31m\"q\" \\ "#;
    let denial = forged.iter().find(|l| l.contains("denied")).unwrap();
    assert!(
        denial.contains(&format!(r#"uid="evil{escaped}""#)),
        "{denial}"
    );
    let rejected = forged
        .iter()
        .find(|l| l.contains("request rejected"))
        .unwrap();
    assert!(rejected.contains(escaped), "{rejected}");
}

#[test]
fn a_client_cannot_forge_json_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::service_certs();
    let args = serve_args(dir.path(), &certs);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    let server = common::process::spawn_serve(&args);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = common::client_builder(&[&certs.ca_pem], server.webhook)
            .build()
            .unwrap();
        let url = format!(
            "https://{}:{}/validate",
            common::SERVICE_NAME,
            server.webhook.port()
        );
        send_forgeries(&client, &url).await;
    });
    wait_for(&server.log, "request rejected", 1);
    let log = server.log.lock().unwrap().clone();
    // Every line is a JSON object: nothing written raw broke one.
    let lines: Vec<Value> = log
        .iter()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(!log.iter().any(|line| line.contains('\u{1b}')), "{log:#?}");
    // The values are the client's, exactly: JSON-escaped once, not escaped twice.
    let denial = lines
        .iter()
        .find(|line| line["fields"]["message"] == "denied")
        .unwrap();
    assert_eq!(denial["span"]["uid"], format!("evil{FORGED}"), "{denial}");
    assert_eq!(denial["span"]["object_name"], "web", "{denial}");
    let rejected = lines
        .iter()
        .find(|line| line["fields"]["message"] == "request rejected")
        .unwrap();
    let reason = rejected["fields"]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("v9{FORGED}")), "{rejected}");
}

#[test]
fn long_messages_are_cut_in_the_log_not_in_the_answer() {
    const LONG: usize = 1_200_000;
    let dir = tempfile::tempdir().unwrap();
    let certs = common::service_certs();
    let args = serve_args(dir.path(), &certs);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    let server = common::process::spawn_serve(&args);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (message_len, reason_len) = runtime.block_on(async {
        let client = common::client_builder(&[&certs.ca_pem], server.webhook)
            .build()
            .unwrap();
        let url = format!(
            "https://{}:{}/validate",
            common::SERVICE_NAME,
            server.webhook.port()
        );
        // A container name of 1.2 MB: Pod Security's denial names it.
        let review = privileged_review("long", &"c".repeat(LONG));
        let (status, answer) = common::post_json(&client, &url, &review).await;
        assert_eq!(status, 200);
        assert_eq!(answer["response"]["allowed"], false);
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.len() > LONG, "{}", message.len());
        // An apiVersion of 1.2 MB: the refusal quotes it.
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(bad_api_version(&"v".repeat(LONG)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let refusal: Value = response.json().await.unwrap();
        let reason = refusal["message"].as_str().unwrap();
        assert!(reason.len() > LONG, "{}", reason.len());
        (message.len(), reason.len())
    });
    wait_for(&server.log, "request rejected", 1);
    let log = server.log.lock().unwrap().clone();
    for line in &log {
        assert!(line.len() <= 4096, "a log line of {} bytes", line.len());
    }
    let lines: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let denial = lines
        .iter()
        .find(|line| line["fields"]["message"] == "denied")
        .unwrap();
    let logged = denial["fields"]["status_message"].as_str().unwrap();
    assert!(
        logged.ends_with(&format!("… (truncated, {message_len} bytes)")),
        "{logged}"
    );
    let rejected = lines
        .iter()
        .find(|line| line["fields"]["message"] == "request rejected")
        .unwrap();
    let logged = rejected["fields"]["reason"].as_str().unwrap();
    assert!(
        logged.ends_with(&format!("… (truncated, {reason_len} bytes)")),
        "{logged}"
    );
}

/// A gzip body: refused before it is read when the request says `Content-Encoding: gzip`,
/// and named as compressed when it does not; either way one log line says why.
#[test]
fn compressed_bodies_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let certs = common::service_certs();
    let args = serve_args(dir.path(), &certs);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    let server = common::process::spawn_serve(&args);
    // The first bytes of `gzip` output: magic number, deflate, no flags, time, extra, OS.
    let gzip = vec![
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56,
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = common::client_builder(&[&certs.ca_pem], server.webhook)
            .build()
            .unwrap();
        let url = format!(
            "https://{}:{}/validate",
            common::SERVICE_NAME,
            server.webhook.port()
        );
        for (encoding, status, message) in [
            (
                Some("gzip"),
                415,
                "Content-Encoding `gzip` is not supported: send the AdmissionReview uncompressed, without Content-Encoding",
            ),
            (
                Some("identity, x-zstd"),
                415,
                "Content-Encoding `identity, x-zstd` is not supported",
            ),
            (
                None,
                400,
                "not an admission review: the body is not JSON: it starts with the gzip magic number, so it looks gzip-compressed",
            ),
        ] {
            let mut request = client
                .post(&url)
                .header("content-type", "application/json")
                .body(gzip.clone());
            if let Some(encoding) = encoding {
                request = request.header("content-encoding", encoding);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), status, "{encoding:?}");
            let answer: Value = response.json().await.unwrap();
            let text = answer["message"].as_str().unwrap();
            assert!(text.starts_with(message), "{encoding:?}: {text}");
        }
        // `identity` is no encoding at all.
        let review = privileged_review("plain", "app");
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .header("content-encoding", "identity")
            .body(review.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
    wait_for(&server.log, "request rejected", 3);
    let log = server.log.lock().unwrap().clone();
    let refusals: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["fields"]["message"] == "request rejected")
        .collect();
    assert_eq!(refusals.len(), 3, "{log:#?}");
    assert!(
        refusals.iter().any(|line| line["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("looks gzip-compressed")),
        "{refusals:#?}"
    );
}
