//! /metrics stays bounded whatever clients send: label values that come from a request
//! (subresource, kind) are taken from a fixed set, anything else is `other`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestOptions, TestServer, pod_review};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_subresources_and_kinds_do_not_grow_metrics() {
    let server = TestServer::start(TestOptions::default()).await;
    let client = server.client();
    let url = server.url("/validate");
    let send = |review: serde_json::Value| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (status, _) = common::post_json(&client, &url, &review).await;
            assert_eq!(status, 200);
        }
    };
    for n in 0..300 {
        // Pod Security evaluates every pod subresource it does not know to ignore, so each of
        // these is an evaluation with a new subresource.
        let mut review = pod_review("admission.k8s.io/v1", &format!("sub-{n}"));
        review["request"]["subResource"] = format!("made-up-{n}").into();
        send(review).await;
        let mut review = pod_review("admission.k8s.io/v1", &format!("kind-{n}"));
        review["request"]["kind"]["kind"] = format!("MadeUp{n}").into();
        review["request"]["resource"]["resource"] = format!("madeups{n}").into();
        send(review).await;
    }
    let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("made-up-"), "{metrics}");
    assert!(!metrics.contains("MadeUp"), "{metrics}");
    let samples =
        |prefix: &str| -> Vec<&str> { metrics.lines().filter(|l| l.starts_with(prefix)).collect() };
    assert_eq!(
        samples("pod_security_evaluations_total{"),
        [
            r#"pod_security_evaluations_total{decision="allow",policy_level="privileged",policy_version="latest",mode="enforce",request_operation="create",resource="pod",subresource="other"} 300"#
        ],
        "{metrics}"
    );
    let requests = samples("kadmit_admission_requests_total{");
    assert!(
        requests.contains(
            &r#"kadmit_admission_requests_total{endpoint="validate",kind="other",operation="CREATE",decision="allowed"} 300"#
        ),
        "{metrics}"
    );
    assert_eq!(requests.len(), 2, "{metrics}");
    // 600 requests, a few kilobytes of metrics.
    assert!(
        metrics.len() < 16 * 1024,
        "{} bytes:\n{metrics}",
        metrics.len()
    );
    server.stop().await;
}
