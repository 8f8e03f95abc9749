//! The "safe to roll out?" round trip: reviews sent to a running server with capture on are
//! replayed with the same configuration (`--diff` finds nothing), then with enforce tightened
//! from baseline to restricted (`--diff` reports exactly the reviews whose answer changes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestOptions, TestServer, pod_review, post_json};
use kadmit::core::Config;
use kadmit::server::capture::CaptureOptions;
use serde_json::{Value, json};

fn replay_diff(config: &Path, capture: &Path) -> (Option<i32>, Vec<Value>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kadmit"))
        .args(["replay", "--diff", "--output", "json", "--config"])
        .arg(config)
        .arg(capture)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let entries =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (output.status.code(), entries, stderr)
}

fn captured_lines(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn captured_traffic_replays_without_differences_until_the_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let policy = |level: &str| {
        format!("podSecurity:\n  defaults:\n    enforce: {level}\n    warn: {level}\n")
    };
    let baseline = dir.path().join("baseline.yaml");
    let restricted = dir.path().join("restricted.yaml");
    std::fs::write(&baseline, policy("baseline")).unwrap();
    std::fs::write(&restricted, policy("restricted")).unwrap();

    let server = TestServer::start(TestOptions {
        config: Config::from_yaml(&policy("baseline")).unwrap(),
        capture: Some(CaptureOptions::new(&capture)),
        ..TestOptions::default()
    })
    .await;
    let client = server.client();
    let restricted_ok = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "nginx", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
    });
    let host_network =
        json!({"hostNetwork": true, "containers": [{"name": "app", "image": "nginx"}]});
    // (uid, pod spec or None for the default nginx pod, answer changes under restricted?)
    let traffic: Vec<(&str, Option<Value>, bool)> = vec![
        ("ok-1", Some(restricted_ok.clone()), false),
        ("ok-2", Some(restricted_ok), false),
        ("plain-1", None, true),
        ("plain-2", None, true),
        ("plain-3", None, true),
        // Denied either way, but the message names the new level and more checks.
        ("hostnet-1", Some(host_network.clone()), true),
        ("hostnet-2", Some(host_network), true),
    ];
    let mut expected_changes = BTreeSet::new();
    for (uid, spec, changes) in &traffic {
        let mut review = pod_review("admission.k8s.io/v1", uid);
        if let Some(spec) = spec {
            review["request"]["object"]["spec"] = spec.clone();
        }
        let (status, answer) = post_json(&client, &server.url("/validate"), &review).await;
        assert_eq!(status, 200, "{answer}");
        if *changes {
            expected_changes.insert(uid.to_string());
        }
        // Mutation is not affected by Pod Security: these records must not change.
        if uid.starts_with("plain") {
            post_json(&client, &server.url("/mutate"), &review).await;
        }
    }
    let records = traffic.len() + 3;
    let deadline = Instant::now() + Duration::from_secs(20);
    while captured_lines(&capture) < records {
        assert!(
            Instant::now() < deadline,
            "captures never reached {records} records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
    assert_eq!(captured_lines(&capture), records);

    let (code, changed, stderr) = replay_diff(&baseline, &capture);
    assert_eq!(changed, Vec::<Value>::new(), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "0 of {records} compared reviews would now be answered differently"
        )),
        "{stderr}"
    );

    let (code, changed, stderr) = replay_diff(&restricted, &capture);
    assert_eq!(code, Some(1), "{stderr}");
    let uids: BTreeSet<String> = changed
        .iter()
        .map(|e| e["uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(uids, expected_changes, "{changed:#?}");
    assert!(
        changed.iter().all(|e| e["endpoint"] == "validate"),
        "{changed:#?}"
    );
    assert!(
        stderr.contains(&format!(
            "{} of {records} compared reviews would now be answered differently",
            expected_changes.len()
        )),
        "{stderr}"
    );
}
