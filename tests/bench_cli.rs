//! `kadmit bench` as users run it: on the published review corpus, on a capture directory,
//! saving and comparing a baseline (the CI gate), and the usage errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

/// Runs `kadmit SUBCOMMAND ARGS`; returns the exit code, stdout and stderr.
fn kadmit(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(KADMIT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `kadmit bench --iterations 2 --warmup 0 --output json ARGS`, parsed.
fn bench_json(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec![
        "bench",
        "--iterations",
        "2",
        "--warmup",
        "0",
        "--output",
        "json",
    ];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = kadmit(&all);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, report, stderr)
}

const POLICIES: [&str; 5] = [
    "pod-security",
    "gmsa",
    "default-resources",
    "image-pull-secrets",
    "security-defaults",
];

/// Every figure is ordered (p50 ≤ p95 ≤ p99), named after an endpoint and a pipeline stage,
/// and the throughput is positive.
fn assert_sane(report: &Value) {
    let figures = report["figures"].as_array().unwrap();
    assert!(!figures.is_empty(), "{report:#}");
    for figure in figures {
        let endpoint = figure["endpoint"].as_str().unwrap();
        let policy = figure["policy"].as_str().unwrap();
        assert!(
            ["mutate", "validate", "review"].contains(&endpoint),
            "{figure}"
        );
        assert!(
            policy == "decode" || policy == "total" || POLICIES.contains(&policy),
            "{figure}"
        );
        let (p50, p95, p99) = (
            figure["p50Ns"].as_u64().unwrap(),
            figure["p95Ns"].as_u64().unwrap(),
            figure["p99Ns"].as_u64().unwrap(),
        );
        assert!(p50 <= p95 && p95 <= p99, "{figure}");
        assert!(figure["samples"].as_u64().unwrap() > 0, "{figure}");
    }
    assert!(
        report["throughput"]["reviewsPerSecond"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert_eq!(report["threads"], 1);
}

#[test]
fn the_review_corpus_is_measured_review_by_review() {
    let Some(shared) = common::shared_dir("the_review_corpus_is_measured_review_by_review") else {
        return;
    };
    let corpus = shared.join("conformance/reviews");
    let corpus = corpus.to_str().unwrap();

    // What replay can use, it measures: the same count of usable reviews.
    let (_, stdout, _) = kadmit(&["replay", "--output", "json", corpus]);
    let entries: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let usable = entries.iter().filter(|e| e.get("error").is_none()).count();
    let unusable = entries.len() - usable;
    assert!(usable > 0);

    let (code, report, stderr) = bench_json(&[corpus]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["inputs"]["reviews"], usable, "{report:#}");
    assert_eq!(report["inputs"]["unusable"], unusable, "{report:#}");
    assert!(
        report["inputs"]["firstUnusable"].as_str().is_some() == (unusable > 0),
        "{report:#}"
    );
    assert_eq!(report["iterations"], 2);
    assert_sane(&report);
    // Both endpoints ran, each with its decode, its policies and its total.
    let names: Vec<(String, String)> = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["endpoint"].as_str().unwrap().to_owned(),
                f["policy"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for wanted in [
        ("mutate", "decode"),
        ("mutate", "pod-security"),
        ("mutate", "total"),
        ("validate", "decode"),
        ("validate", "pod-security"),
        ("validate", "total"),
        ("review", "total"),
    ] {
        assert!(
            names.contains(&(wanted.0.to_owned(), wanted.1.to_owned())),
            "{wanted:?} missing: {names:?}"
        );
    }
    // The person's summary goes to stderr, with the unusable documents counted.
    assert!(stderr.contains("kadmit bench:"), "{stderr}");
    assert!(
        stderr.contains(&format!("{unusable} documents unusable")),
        "{stderr}"
    );

    // The text table names every row the JSON has.
    let (code, text, stderr) = kadmit(&["bench", "--iterations", "1", "--warmup", "0", corpus]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(text.starts_with("kadmit bench: "), "{text}");
    assert!(text.contains("mutate    pod-security"), "{text}");
    assert!(text.contains("throughput: "), "{text}");
}

/// A pod review as the API server sends it.
fn pod_review(uid: &str, name: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }
        }
    })
}

/// Capture lines as `serve --capture-dir` writes them: each review at both endpoints.
fn write_capture(dir: &Path, reviews: usize) {
    let mut lines = String::new();
    for n in 0..reviews {
        let uid = format!("uid-{n}");
        for endpoint in ["mutate", "validate"] {
            let record = json!({
                "time": "2025-06-01T12:00:00.123456Z",
                "endpoint": endpoint,
                "dryRun": false,
                "review": pod_review(&uid, &format!("web-{n}")),
                "response": {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": {"uid": uid, "allowed": true}
                }
            });
            lines.push_str(&record.to_string());
            lines.push('\n');
        }
    }
    std::fs::write(dir.join("kadmit-capture-20250601T120000Z-0.jsonl"), lines).unwrap();
}

#[test]
fn a_capture_directory_is_measured_at_the_recorded_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    write_capture(dir.path(), 3);
    let (code, report, stderr) = bench_json(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["inputs"]["reviews"], 6, "{report:#}");
    assert_eq!(report["inputs"]["unusable"], 0, "{report:#}");
    assert_sane(&report);
    // Each record went to its own endpoint once per iteration: 3 calls each.
    let total = |endpoint: &str| {
        report["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["endpoint"] == endpoint && f["policy"] == "total")
            .map(|f| f["samples"].as_u64().unwrap())
    };
    assert_eq!(total("mutate"), Some(6), "{report:#}");
    assert_eq!(total("validate"), Some(6), "{report:#}");

    // --endpoint overrides the recorded endpoint, as in replay.
    let (code, report, stderr) =
        bench_json(&["--endpoint", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        report["figures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["endpoint"] == "validate"),
        "{report:#}"
    );
}

#[test]
fn a_saved_baseline_gates_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let reviews = dir.path().join("reviews");
    std::fs::create_dir(&reviews).unwrap();
    for n in 0..3 {
        std::fs::write(
            reviews.join(format!("pod-{n}.json")),
            pod_review(&format!("u{n}"), &format!("p{n}")).to_string(),
        )
        .unwrap();
    }
    let reviews = reviews.to_str().unwrap();
    let baseline = dir.path().join("baseline.json");
    let baseline_arg = baseline.to_str().unwrap();

    let (code, _, stderr) = bench_json(&["--save", baseline_arg, reviews]);
    assert_eq!(code, Some(0), "{stderr}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&baseline).unwrap()).unwrap();
    assert_sane(&saved);
    assert!(saved["kadmit"].is_string());
    assert!(saved.get("comparison").is_none());

    // A generous gate passes and shows the ratios.
    let (code, text, stderr) = kadmit(&[
        "bench",
        "--iterations",
        "2",
        "--warmup",
        "0",
        "--compare",
        baseline_arg,
        "--max-regression",
        "1000000",
        reviews,
    ]);
    assert_eq!(code, Some(0), "{text}\n{stderr}");
    assert!(text.contains("compared with"), "{text}");
    assert!(text.contains('×'), "{text}");
    let (code, report, stderr) = bench_json(&[
        "--compare",
        baseline_arg,
        "--max-regression",
        "1000000",
        reviews,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let comparison = &report["comparison"];
    assert!(!comparison["rows"].as_array().unwrap().is_empty());
    assert!(
        comparison["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ratio"].as_f64().unwrap() > 0.0),
        "{comparison:#}"
    );
    assert_eq!(comparison["regressions"], json!([]));

    // A baseline that was impossibly fast: every p50 regressed, and the gate says which.
    let mut doctored = saved.clone();
    for figure in doctored["figures"].as_array_mut().unwrap() {
        figure["p50Ns"] = json!(1);
    }
    let doctored_path = dir.path().join("doctored.json");
    std::fs::write(&doctored_path, doctored.to_string()).unwrap();
    let (code, text, stderr) = kadmit(&[
        "bench",
        "--iterations",
        "2",
        "--warmup",
        "0",
        "--compare",
        doctored_path.to_str().unwrap(),
        "--max-regression",
        "10",
        reviews,
    ]);
    assert_eq!(code, Some(1), "{text}\n{stderr}");
    assert!(
        stderr.contains("regressed by more than 10%: mutate decode p50"),
        "{stderr}"
    );
    assert!(stderr.contains("validate total p50"), "{stderr}");
    assert!(text.contains("REGRESSED") || text.contains('!'), "{text}");

    // A file that is not a baseline is a usage error naming it.
    let (code, _, stderr) = kadmit(&["bench", "--compare", reviews, reviews]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) = kadmit(&[
        "bench",
        "--compare",
        dir.path().join("reviews/pod-0.json").to_str().unwrap(),
        reviews,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not a kadmit bench baseline"), "{stderr}");
}

#[test]
fn inputs_without_a_usable_review_and_bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.json"), r#"{"hello": "world"}"#).unwrap();
    std::fs::write(dir.path().join("list.yaml"), "- a\n- b\n").unwrap();
    let (code, stdout, stderr) = kadmit(&["bench", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("no usable review"), "{stderr}");
    assert!(stderr.contains("2 documents unusable"), "{stderr}");
    assert!(stderr.contains("list.yaml"), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = kadmit(&["bench", empty.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no *.json"), "{stderr}");

    let (code, _, stderr) = kadmit(&["bench", "--endpoint", "sideways", "x.json"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("sideways"), "{stderr}");

    let (code, _, stderr) = kadmit(&["bench", "--iterations", "0", "x.json"]);
    assert_eq!(code, Some(2), "{stderr}");

    let (code, _, stderr) = kadmit(&["bench", "--max-regression", "10", "x.json"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--compare"), "{stderr}");
}
