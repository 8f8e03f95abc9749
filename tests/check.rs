//! `kadmit check` as users run it: the upstream fixture corpus one directory per command,
//! output formats, exit codes, and the same verdict and message as the webhook.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use common::{TestOptions, TestServer, post_json};
use kadmit::core::Config;
use kadmit::core::cluster::Snapshot;
use kadmit::core::config::WorkloadMode;
use serde_json::{Value, json};

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(KADMIT)
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn every_fixture_directory_through_check_output_json() {
    let Some(shared) = common::shared_dir("every_fixture_directory_through_check_output_json")
    else {
        return;
    };
    let psa = shared.join("conformance/psa");
    let index = std::fs::read_to_string(psa.join("index.tsv")).unwrap();
    /// (path, expect, substring) of one index row.
    type Row = (String, String, String);
    // (level, version) → its rows
    let mut dirs: Vec<((String, String), Vec<Row>)> = Vec::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let key = (cols[0].to_owned(), cols[1].to_owned());
        let row = (cols[3].to_owned(), cols[4].to_owned(), cols[5].to_owned());
        match dirs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(row),
            None => dirs.push((key, vec![row])),
        }
    }
    let mut matched = 0;
    for ((level, version), rows) in &dirs {
        let dir = psa.join("testdata").join(level).join(version);
        let (code, stdout, stderr) = check(&[
            "--level",
            level,
            "--version",
            version,
            "--output",
            "json",
            dir.to_str().unwrap(),
        ]);
        let entries: Vec<Value> = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{level} {version}: {e}: {stderr}"));
        let by_path: HashMap<&str, &Value> = entries
            .iter()
            .map(|e| (e["path"].as_str().unwrap(), e))
            .collect();
        assert_eq!(
            entries.len(),
            rows.len(),
            "{level} {version}: one element per fixture"
        );
        let any_deny = rows.iter().any(|(_, expect, _)| expect == "deny");
        assert_eq!(
            code,
            Some(if any_deny { 1 } else { 0 }),
            "{level} {version} exit code"
        );
        for (path, expect, substring) in rows {
            let full = psa.join("testdata").join(path);
            let entry = by_path
                .get(full.to_str().unwrap())
                .unwrap_or_else(|| panic!("{path} missing from the output"));
            assert_eq!(entry["kind"], "Pod");
            assert_eq!(entry["index"], 0);
            match expect.as_str() {
                "allow" => {
                    assert_eq!(entry["allowed"], true, "{path}: {entry}");
                    assert_eq!(entry["message"], Value::Null);
                    assert_eq!(entry["violations"], json!([]));
                }
                _ => {
                    assert_eq!(entry["allowed"], false, "{path}");
                    let message = entry["message"].as_str().unwrap();
                    assert!(
                        message.contains(substring.as_str()),
                        "{path}: {message:?} lacks {substring:?}"
                    );
                    assert!(!message.contains("unknown forbidden reason"), "{path}");
                    assert!(!entry["violations"].as_array().unwrap().is_empty());
                }
            }
            matched += 1;
        }
    }
    println!(
        "{matched} fixtures in {} directories as upstream through `kadmit check --output json`",
        dirs.len()
    );
    assert_eq!(matched, 4537);
}

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostNetwork: true
      containers:
      - name: app
        image: nginx
        securityContext: {privileged: true}
---
apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: v1
kind: Pod
metadata: {name: ok}
spec:
  containers:
  - name: app
    image: nginx
"#;

#[test]
fn text_output_points_at_the_fields_and_exit_codes_follow_the_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, WEB).unwrap();
    let (code, stdout, stderr) = check(&["--level", "baseline", file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let shown = file.display();
    assert!(
        stdout.contains(&format!(
            "DENY  {shown}#0 Deployment \"web\" (baseline:latest)"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("      - host namespaces: hostNetwork=true\n          at spec.template.spec.hostNetwork\n"), "{stdout}");
    assert!(
        stdout
            .contains("          at spec.template.spec.containers[0].securityContext.privileged\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ok    {shown}#2 Pod \"ok\" (baseline:latest)")),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("1 allowed, 1 denied, 0 unreadable\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("not checked (no pod template): Service ×1"),
        "{stderr}"
    );

    let (code, _, _) = check(&["--level", "privileged", file.to_str().unwrap()]);
    assert_eq!(code, Some(0));

    std::fs::write(
        dir.path().join("broken.json"),
        "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"spec\": {\"containers\": 3}}",
    )
    .unwrap();
    let (code, stdout, _) = check(&[
        "--level",
        "baseline",
        "--output",
        "json",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        code,
        Some(2),
        "an unreadable document is an input error: {stdout}"
    );
    let entries: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        entries[0],
        json!({"path": dir.path().join("broken.json").display().to_string(), "index": 0,
               "error": "does not decode as a v1 Pod: spec.containers: invalid type: integer `3`, expected a sequence"})
    );

    let (code, _, stderr) = check(&["--level", "strict", file.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("`strict` is not a level"), "{stderr}");
    let (code, _, stderr) = check(&[file.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("give --level"), "{stderr}");
}

#[tokio::test]
async fn the_webhook_and_check_give_the_same_verdict_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, WEB).unwrap();
    let cluster = Snapshot::parse(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n").unwrap();
    let mut config = Config::default();
    config.pod_security.workloads = WorkloadMode::Enforce;
    let server = TestServer::start(TestOptions {
        config,
        cluster: Arc::new(cluster),
        ..TestOptions::default()
    })
    .await;

    // check, with the level from the namespace's label in the snapshot.
    let (_, stdout, stderr) = check(&[
        "--cluster",
        dir.path().join("cluster.yaml").to_str().unwrap(),
        "--output",
        "json",
        file.to_str().unwrap(),
    ]);
    let entries: Vec<Value> =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let deployment = &entries[0];
    assert_eq!(deployment["policy"], "restricted:latest");

    // The webhook, for the same Deployment and for a Pod made of its template.
    let manifest: Vec<Value> = kadmit::core::manifest::read_manifest(WEB)
        .into_iter()
        .map(|o| o.unwrap().value)
        .collect();
    let review = |kind: &str, group: &str, resource: &str, object: &Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "same", "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": object["metadata"]["name"], "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "alice"}, "object": object}})
    };
    let (_, answer) = post_json(
        &server.client(),
        &server.url("/validate"),
        &review("Deployment", "apps", "deployments", &manifest[0]),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    assert_eq!(
        answer["response"]["status"]["message"],
        deployment["message"]
    );

    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop"},
                         "spec": manifest[0]["spec"]["template"]["spec"]});
    let (_, answer) = post_json(
        &server.client(),
        &server.url("/validate"),
        &review("Pod", "", "pods", &pod),
    )
    .await;
    let pod_file = dir.path().join("pod.json");
    std::fs::write(&pod_file, serde_json::to_vec(&pod).unwrap()).unwrap();
    let (_, stdout, _) = check(&[
        "--level",
        "restricted",
        "--output",
        "json",
        pod_file.to_str().unwrap(),
    ]);
    let entries: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        answer["response"]["status"]["message"],
        entries[0]["message"]
    );
    assert!(
        entries[0]["message"].as_str().unwrap().starts_with(
            "pods \"web-1\" is forbidden: violates PodSecurity \"restricted:latest\": "
        )
    );

    // And an allowed one is allowed by both.
    pod["spec"] = manifest[2]["spec"].clone();
    pod["spec"]["securityContext"] =
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    pod["spec"]["containers"][0]["securityContext"] =
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    let (_, answer) = post_json(
        &server.client(),
        &server.url("/validate"),
        &review("Pod", "", "pods", &pod),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    std::fs::write(&pod_file, serde_json::to_vec(&pod).unwrap()).unwrap();
    let (code, _, _) = check(&["--level", "restricted", pod_file.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    server.stop().await;
}
