//! Every real AdmissionReview document of `../shared/conformance/reviews/`, sent as published
//! to both endpoints: each gets a well-formed AdmissionReview answer with its uid, or a 4xx
//! whose message names the problem, and the server stays up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{TestOptions, TestServer};
use serde_json::Value;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn every_published_review_gets_an_answer_or_a_precise_4xx() {
    let Some(shared) = common::shared_dir("every_published_review_gets_an_answer_or_a_precise_4xx")
    else {
        return;
    };
    let corpus = shared.join("conformance/reviews");
    let mut paths = Vec::new();
    files(&corpus, &mut paths);
    paths.sort();
    assert!(
        paths.len() >= 150,
        "expected the whole corpus, found {} files",
        paths.len()
    );

    let server = TestServer::start(TestOptions::default()).await;
    let client = server.client();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for path in &paths {
        let body = std::fs::read(path).unwrap();
        let name = path.strip_prefix(&corpus).unwrap().display().to_string();
        // What the document says about itself, when it is JSON.
        let sent: Option<Value> = serde_json::from_slice(&body).ok();
        let sent_uid = sent
            .as_ref()
            .and_then(|v| v.pointer("/request/uid"))
            .and_then(Value::as_str);
        let sent_version = sent
            .as_ref()
            .and_then(|v| v.get("apiVersion"))
            .and_then(Value::as_str);
        for endpoint in ["/validate", "/mutate"] {
            let response = client
                .post(server.url(endpoint))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name} {endpoint}: no answer: {e}"));
            let status = response.status().as_u16();
            let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap())
                .unwrap_or_else(|e| panic!("{name} {endpoint}: answer is not JSON: {e}"));
            match status {
                200 => {
                    let uid = sent_uid
                        .unwrap_or_else(|| panic!("{name}: answered 200 without a request uid"));
                    assert_eq!(answer["response"]["uid"], uid, "{name} {endpoint}");
                    assert_eq!(answer["kind"], "AdmissionReview", "{name}");
                    assert_eq!(
                        answer["apiVersion"].as_str(),
                        sent_version,
                        "{name}: answered in another version"
                    );
                    let allowed = answer["response"]["allowed"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("{name}: no allowed"));
                    if !allowed {
                        let message = answer["response"]["status"]["message"]
                            .as_str()
                            .unwrap_or_default();
                        assert!(!message.is_empty(), "{name}: denied without a message");
                    }
                    *outcomes
                        .entry(format!("200 allowed={allowed}"))
                        .or_default() += 1;
                }
                400..=499 => {
                    assert_eq!(answer["code"], status, "{name}");
                    let message = answer["message"].as_str().unwrap_or_default();
                    assert!(
                        message.starts_with("not an admission review: "),
                        "{name}: {message}"
                    );
                    assert!(
                        message.len() > "not an admission review: ".len() + 5,
                        "{name}: {message}"
                    );
                    *outcomes
                        .entry(format!("{status}: {}", message_class(message)))
                        .or_default() += 1;
                }
                other => panic!("{name} {endpoint}: status {other}: {answer}"),
            }
        }
    }
    println!("{} documents x 2 endpoints:", paths.len());
    for (outcome, count) in &outcomes {
        println!("  {count:4}  {outcome}");
    }
    // Well-formed reviews exist in the corpus and must be among the answers.
    assert!(
        outcomes.get("200 allowed=true").copied().unwrap_or(0) >= 100,
        "{outcomes:?}"
    );
    let health = reqwest::get(format!("http://{}/healthz", server.metrics_addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
}

/// The message up to the field-specific part, to group the printed summary.
fn message_class(message: &str) -> String {
    let rest = message.trim_start_matches("not an admission review: ");
    rest.split(['`', '('])
        .next()
        .unwrap_or(rest)
        .trim()
        .to_owned()
}
