//! Capture in `serve` (`--capture-dir`) through the real HTTPS server: what a record holds,
//! rotation and the size bound, redaction, write failures that must not touch admission, and
//! sampling; then the flags of the `kadmit` binary end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestOptions, TestServer, pod_review};
use kadmit::core::Config;
use kadmit::server::capture::{CaptureHandle, CaptureOptions, REDACTED, RedactPath, Sampler};
use kadmit::telemetry::metrics::Metrics;
use serde_json::{Value, json};

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

async fn start(capture: CaptureOptions, config: Config) -> TestServer {
    TestServer::start(TestOptions {
        config,
        capture: Some(capture),
        ..TestOptions::default()
    })
    .await
}

/// Posts `body` and returns the status and the answer exactly as received.
async fn send(
    server: &TestServer,
    client: &reqwest::Client,
    path: &str,
    body: &Value,
) -> (u16, String) {
    let response = client
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn flush(server: &TestServer) {
    let capture = server.capture.as_ref().unwrap();
    assert!(
        capture.flush(Duration::from_secs(20)).await,
        "the capture writer keeps up"
    );
}

/// The capture files in `dir`, oldest first.
fn capture_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("kadmit-capture-") && name.ends_with(".jsonl")
        })
        .collect();
    files.sort();
    files
}

/// Every record line (raw) of every capture file, oldest first.
fn lines(dir: &Path) -> Vec<String> {
    capture_files(dir)
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{} ends mid-line",
                file.display()
            );
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

fn records(dir: &Path) -> Vec<Value> {
    lines(dir)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The value of a metric sample line, such as `kadmit_capture_records_total`.
fn metric(metrics: &Metrics, sample: &str) -> u64 {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample}"))
}

fn dropped(metrics: &Metrics, reason: &str) -> u64 {
    metric(
        metrics,
        &format!("kadmit_capture_dropped_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn reviews_and_the_answers_sent_are_captured() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_yaml("podSecurity:\n  defaults:\n    enforce: restricted\n").unwrap();
    let server = start(CaptureOptions::new(dir.path()), config).await;
    let client = server.client();

    let mut validate = pod_review("admission.k8s.io/v1", "u-validate");
    validate["request"]["dryRun"] = json!(true);
    let (status, validate_answer) = send(&server, &client, "/validate", &validate).await;
    assert_eq!(status, 200);
    let mutate = pod_review("admission.k8s.io/v1beta1", "u-mutate");
    let (status, mutate_answer) = send(&server, &client, "/mutate", &mutate).await;
    assert_eq!(status, 200);
    // Requests answered with an HTTP error instead of a review are not captured.
    let rejected = client
        .post(server.url("/validate"))
        .header("content-type", "text/plain")
        .body(serde_json::to_vec(&validate).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status().as_u16(), 415);
    let (status, _) = send(&server, &client, "/validate", &json!({"not": "a review"})).await;
    assert_eq!(status, 400);
    flush(&server).await;

    let files = capture_files(dir.path());
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap();
    let middle = name
        .strip_prefix("kadmit-capture-")
        .and_then(|n| n.strip_suffix(".jsonl"))
        .unwrap();
    let (stamp, seq) = middle.split_once('-').unwrap();
    assert_eq!(stamp.len(), 16, "{name}");
    assert!(stamp.ends_with('Z') && &stamp[8..9] == "T", "{name}");
    assert!(seq.bytes().all(|b| b.is_ascii_digit()), "{name}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let raw = lines(dir.path());
    assert_eq!(raw.len(), 2, "{raw:#?}");
    let records: Vec<Value> = raw
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expectations = [
        ("validate", "u-validate", true, &validate, &validate_answer),
        ("mutate", "u-mutate", false, &mutate, &mutate_answer),
    ];
    for ((record, line), (endpoint, uid, dry_run, review, answer)) in
        records.iter().zip(&raw).zip(expectations)
    {
        assert_eq!(record["endpoint"], endpoint);
        assert_eq!(record["dryRun"], dry_run);
        assert_eq!(record["review"]["request"]["uid"], uid);
        // Nothing to redact in a pod without configured paths: the review as sent.
        assert_eq!(&record["review"], review);
        // The answer byte for byte as the client received it.
        assert!(
            line.ends_with(&format!("\"response\":{answer}}}")),
            "{line}\nvs\n{answer}"
        );
        assert_eq!(
            record["response"],
            serde_json::from_str::<Value>(answer).unwrap()
        );
        let time = record["time"].as_str().unwrap();
        assert!(time.ends_with('Z'), "{time}");
        let at = humantime::parse_rfc3339(time).unwrap();
        assert!(at.elapsed().unwrap_or_default() < Duration::from_secs(300));
    }
    assert_eq!(records[0]["response"]["response"]["allowed"], false);
    assert_eq!(
        records[1]["response"]["apiVersion"],
        "admission.k8s.io/v1beta1"
    );
    assert_eq!(metric(&server.metrics, "kadmit_capture_records_total"), 2);
    for reason in ["queue_full", "write_error", "too_large", "too_deep"] {
        assert_eq!(dropped(&server.metrics, reason), 0);
    }
    server.stop().await;
}

/// A ConfigMap review (no policy reads it: allowed) whose object holds a value `depth` levels
/// deep, so that the whole review is `depth + 3` levels deep. Text, because serde_json's
/// `Value` cannot be built or parsed that deep.
fn nested_review(uid: &str, depth: usize) -> String {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"{uid}","kind":{{"group":"","version":"v1","kind":"ConfigMap"}},"resource":{{"group":"","version":"v1","resource":"configmaps"}},"namespace":"default","operation":"CREATE","object":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"x":{}1{}}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// A review nested deeper than capture parses (serde_json's limit, which `kadmit replay` has
/// too) is answered as usual and dropped from capture under its own reason, `too_deep`, not
/// as a write error; one as deep as the limit is captured whole, in a line replay can read.
#[tokio::test]
async fn a_review_nested_too_deep_is_dropped_as_too_deep() {
    use kadmit::server::capture::MAX_DEPTH;
    let dir = tempfile::tempdir().unwrap();
    let server = start(CaptureOptions::new(dir.path()), Config::default()).await;
    let client = server.client();
    for (uid, depth) in [
        ("at-the-limit", MAX_DEPTH - 3),
        ("too-deep", MAX_DEPTH - 2),
        ("far-too-deep", 100_000),
    ] {
        let response = client
            .post(server.url("/validate"))
            .header("content-type", "application/json")
            .body(nested_review(uid, depth))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uid}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["response"]["uid"], uid);
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    flush(&server).await;
    let captured = records(dir.path());
    assert_eq!(captured.len(), 1, "{captured:#?}");
    assert_eq!(captured[0]["review"]["request"]["uid"], "at-the-limit");
    // `kadmit replay` reads it back (its parser has the same limit).
    let replay = Command::new(KADMIT)
        .args(["replay", "--diff"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
    assert_eq!(dropped(&server.metrics, "too_deep"), 2);
    assert_eq!(dropped(&server.metrics, "write_error"), 0);
    // The writer goes on capturing.
    let (status, _) = send(
        &server,
        &client,
        "/validate",
        &pod_review("admission.k8s.io/v1", "after"),
    )
    .await;
    assert_eq!(status, 200);
    flush(&server).await;
    assert_eq!(records(dir.path()).len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn files_rotate_by_size_and_the_oldest_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // From an earlier run: the oldest capture file, and a file that is not a capture.
    let old = dir
        .path()
        .join("kadmit-capture-20000101T000000Z-000041.jsonl");
    std::fs::write(&old, "{}\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();

    let max_file_bytes = 3000;
    let max_files = 3;
    let mut options = CaptureOptions::new(dir.path());
    options.max_file_bytes = max_file_bytes;
    options.max_files = max_files;
    let server = start(options, Config::default()).await;
    let client = server.client();
    let total = 60;
    for i in 0..total {
        let (status, _) = send(
            &server,
            &client,
            "/validate",
            &pod_review("admission.k8s.io/v1", &format!("u-{i:03}")),
        )
        .await;
        assert_eq!(status, 200);
    }
    flush(&server).await;

    let files = capture_files(dir.path());
    assert_eq!(files.len(), max_files, "{files:#?}");
    assert!(!old.exists(), "the oldest file is deleted");
    assert!(
        dir.path().join("notes.txt").exists(),
        "other files are left alone"
    );
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    assert!(sizes.iter().all(|s| *s <= max_file_bytes), "{sizes:?}");
    assert!(sizes.iter().sum::<u64>() <= max_file_bytes * max_files as u64);
    // Sequence numbers continue after the earlier run's; many files were written in all.
    let newest = files.last().unwrap().file_name().unwrap().to_str().unwrap();
    let seq: u64 = newest
        .trim_end_matches(".jsonl")
        .rsplit_once('-')
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(seq >= 42 + 10, "{newest}");

    // What is left is the most recent traffic, in order, without gaps.
    let uids: Vec<String> = records(dir.path())
        .iter()
        .map(|r| r["review"]["request"]["uid"].as_str().unwrap().to_owned())
        .collect();
    assert!(uids.len() >= 6, "{uids:?}");
    let first = total - uids.len();
    let expected: Vec<String> = (first..total).map(|i| format!("u-{i:03}")).collect();
    assert_eq!(uids, expected);
    assert_eq!(
        metric(&server.metrics, "kadmit_capture_records_total"),
        total as u64
    );
    server.stop().await;
}

fn secret(token: &str, password_b64: &str, note: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "default",
            "annotations": {"secret-token": token, "example.com/key": note, "owner": "team-a"}
        },
        "type": "Opaque",
        "data": {"password": password_b64, "user": "YWRtaW4="},
        "stringData": {"token": token}
    })
}

#[tokio::test]
async fn secrets_and_configured_paths_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = CaptureOptions::new(dir.path());
    options.redact = vec![
        RedactPath::parse("metadata.annotations.secret-token").unwrap(),
        RedactPath::parse("/metadata/annotations/example.com~1key").unwrap(),
    ];
    let server = start(options, Config::default()).await;
    let client = server.client();

    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-secret",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "namespace": "default",
            "name": "db",
            "operation": "UPDATE",
            "userInfo": {"username": "alice"},
            "dryRun": true,
            "object": secret("tok-NEW-1234", "aHVudGVyMk5FVw==", "note-NEW"),
            "oldObject": secret("tok-OLD-5678", "aHVudGVyMk9MRA==", "note-OLD")
        }
    });
    let (status, answer) = send(&server, &client, "/validate", &review).await;
    assert_eq!(status, 200);
    // Configured paths apply to every kind.
    let mut pod = pod_review("admission.k8s.io/v1", "u-pod");
    pod["request"]["object"]["metadata"]["annotations"] =
        json!({"secret-token": "pod-token-9999", "owner": "team-b"});
    let (status, _) = send(&server, &client, "/mutate", &pod).await;
    assert_eq!(status, 200);
    flush(&server).await;

    let text: String = lines(dir.path()).join("\n");
    for secret in [
        "tok-NEW-1234",
        "tok-OLD-5678",
        "aHVudGVyMk5FVw==",
        "aHVudGVyMk9MRA==",
        "YWRtaW4=",
        "note-NEW",
        "note-OLD",
        "pod-token-9999",
    ] {
        assert!(!text.contains(secret), "{secret} was written:\n{text}");
    }
    let records = records(dir.path());
    assert_eq!(records.len(), 2);
    let captured = &records[0];
    assert_eq!(captured["dryRun"], true);
    assert_eq!(
        captured["response"],
        serde_json::from_str::<Value>(&answer).unwrap()
    );
    for key in ["object", "oldObject"] {
        let object = &captured["review"]["request"][key];
        assert_eq!(
            object["data"],
            json!({"password": REDACTED, "user": REDACTED}),
            "{key}: keys kept, values redacted"
        );
        assert_eq!(object["stringData"], json!({"token": REDACTED}), "{key}");
        assert_eq!(
            object["metadata"]["annotations"],
            json!({"secret-token": REDACTED, "example.com/key": REDACTED, "owner": "team-a"}),
            "{key}"
        );
        assert_eq!(object["metadata"]["name"], "db");
        assert_eq!(object["type"], "Opaque");
    }
    // Only the redacted values differ from what was sent.
    let mut expected = review.clone();
    for key in ["object", "oldObject"] {
        let object = &mut expected["request"][key];
        object["data"] = json!({"password": REDACTED, "user": REDACTED});
        object["stringData"] = json!({"token": REDACTED});
        object["metadata"]["annotations"]["secret-token"] = json!(REDACTED);
        object["metadata"]["annotations"]["example.com/key"] = json!(REDACTED);
    }
    assert_eq!(captured["review"], expected);

    let pod_record = &records[1];
    assert_eq!(pod_record["endpoint"], "mutate");
    assert_eq!(
        pod_record["review"]["request"]["object"]["metadata"]["annotations"],
        json!({"secret-token": REDACTED, "owner": "team-b"})
    );
    assert_eq!(
        pod_record["review"]["request"]["object"]["spec"],
        pod["request"]["object"]["spec"]
    );
    server.stop().await;
}

/// Log lines collected from a test's own subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn matching(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

/// The capture directory becomes unusable after start (here: a regular file where it was, so
/// every new file fails with "Not a directory"): admission goes on, the drops are counted and
/// logged once; when the directory is back, captures resume and that is logged.
#[tokio::test]
async fn write_failures_never_fail_admission() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("captures");
    let server = start(CaptureOptions::new(&dir), Config::default()).await;
    std::fs::remove_dir(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();

    let client = server.client();
    for i in 0..5 {
        let started = Instant::now();
        let (status, answer) = send(
            &server,
            &client,
            "/validate",
            &pod_review("admission.k8s.io/v1", &format!("u-{i}")),
        )
        .await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    flush(&server).await;
    assert_eq!(dropped(&server.metrics, "write_error"), 5);
    assert_eq!(metric(&server.metrics, "kadmit_capture_records_total"), 0);
    let dir_text = dir.display().to_string();
    let warnings = logs.matching("capture record dropped");
    assert_eq!(
        warnings.len(),
        1,
        "logged once, not per record: {warnings:#?}"
    );
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains(&dir_text), "{}", warnings[0]);

    // Space again: the directory is made anew on the next capture.
    std::fs::remove_file(&dir).unwrap();
    let (status, _) = send(
        &server,
        &client,
        "/mutate",
        &pod_review("admission.k8s.io/v1", "u-ok"),
    )
    .await;
    assert_eq!(status, 200);
    flush(&server).await;
    assert_eq!(metric(&server.metrics, "kadmit_capture_records_total"), 1);
    assert_eq!(dropped(&server.metrics, "write_error"), 5);
    let resumed = logs.matching("capture files are being written again");
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert!(resumed[0].contains("dropped=5"), "{}", resumed[0]);
    let records = records(&dir);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["review"]["request"]["uid"], "u-ok");
    assert_eq!(logs.matching("capture record dropped").len(), 1);
    server.stop().await;
}

#[test]
fn an_unusable_capture_directory_fails_at_start() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = CaptureHandle::start(
        CaptureOptions::new(file.join("captures")),
        Arc::new(Metrics::new()),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotADirectory, "{err}");
}

#[tokio::test]
async fn sampling_is_by_uid_and_deterministic() {
    // Rate 0: nothing.
    let dir = tempfile::tempdir().unwrap();
    let mut options = CaptureOptions::new(dir.path());
    options.sample_rate = 0.0;
    let server = start(options, Config::default()).await;
    let client = server.client();
    for i in 0..20 {
        let review = pod_review("admission.k8s.io/v1", &format!("none-{i}"));
        assert_eq!(send(&server, &client, "/validate", &review).await.0, 200);
    }
    flush(&server).await;
    assert!(lines(dir.path()).is_empty());
    assert_eq!(metric(&server.metrics, "kadmit_capture_records_total"), 0);
    server.stop().await;

    // Rate 0.5: about half of the uids, each at both endpoints or neither.
    let dir = tempfile::tempdir().unwrap();
    let mut options = CaptureOptions::new(dir.path());
    options.sample_rate = 0.5;
    let server = start(options, Config::default()).await;
    let client = server.client();
    let uids: Vec<String> = (0..100).map(|i| format!("half-{i}")).collect();
    for uid in &uids {
        let review = pod_review("admission.k8s.io/v1", uid);
        assert_eq!(send(&server, &client, "/mutate", &review).await.0, 200);
        assert_eq!(send(&server, &client, "/validate", &review).await.0, 200);
    }
    flush(&server).await;
    let sampler = Sampler::new(0.5);
    let expected: Vec<&String> = uids.iter().filter(|u| sampler.sampled(u)).collect();
    assert!(
        (35..=65).contains(&expected.len()),
        "about half: {}",
        expected.len()
    );
    let records = records(dir.path());
    assert_eq!(records.len(), 2 * expected.len());
    for (pair, uid) in records.chunks(2).zip(&expected) {
        assert_eq!(pair[0]["review"]["request"]["uid"], uid.as_str());
        assert_eq!(pair[0]["endpoint"], "mutate");
        assert_eq!(pair[1]["review"]["request"]["uid"], uid.as_str());
        assert_eq!(pair[1]["endpoint"], "validate");
    }
    server.stop().await;
}

/// `kadmit serve --capture-*` end to end: flags, redaction, the record written by the time the
/// process exits on SIGTERM; and flag errors.
#[test]
fn the_serve_flags_capture_and_reject_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let captures = dir.path().join("captures");
    let mut child = Command::new(KADMIT)
        .args([
            "serve",
            "--dev",
            "--bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "127.0.0.1:0",
            "--capture-max-files",
            "2",
            "--capture-max-file-bytes",
            "100000",
            "--capture-sample-rate",
            "1",
            "--capture-redact",
            "spec.containers.*.image",
            "--capture-dir",
        ])
        .arg(&captures)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let curl = stdout
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("curl "));
    let Some(curl) = curl else {
        let _ = child.kill();
        panic!("serve --dev prints a curl command");
    };
    let output = Command::new("sh").args(["-c", &curl]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer = String::from_utf8(output.stdout).unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let raw = lines(&captures);
    assert_eq!(raw.len(), 1, "{raw:#?}");
    assert!(raw[0].ends_with(&format!("\"response\":{}}}", answer.trim_end())));
    let record: Value = serde_json::from_str(&raw[0]).unwrap();
    assert_eq!(record["endpoint"], "validate");
    assert_eq!(record["dryRun"], false);
    assert_eq!(
        record["review"]["request"]["object"]["spec"]["containers"][0]["image"],
        REDACTED
    );

    let help = Command::new(KADMIT)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--capture-dir",
        "--capture-max-file-bytes",
        "--capture-max-files",
        "--capture-sample-rate",
        "--capture-redact",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }

    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for (args, message) in [
        (vec!["--capture-sample-rate", "1.5"], "sample rate"),
        (vec!["--capture-max-files", "0"], "at least 1"),
        (
            vec!["--capture-max-file-bytes", "0"],
            "capture-max-file-bytes",
        ),
        (vec!["--capture-redact", "metadata..name"], "empty segment"),
        (
            vec!["--capture-dir", file.join("sub").to_str().unwrap()],
            "--capture-dir",
        ),
    ] {
        let output = Command::new(KADMIT)
            .args([
                "serve",
                "--dev",
                "--bind",
                "127.0.0.1:0",
                "--metrics-bind",
                "127.0.0.1:0",
            ])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
