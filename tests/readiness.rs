//! `/readyz` of a server wired to a live cluster view, as `kadmit serve` wires it: not ready
//! while the Namespace or Pod cache has not synced, ready once both have.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake_api::{DEADLINE, FakeApiServer, Recorded, namespace};
use common::{TestOptions, TestServer};
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::client_from_kubeconfig;
use kadmit::server::state::Readiness;
use kadmit_core::ClusterView;

/// `GET http://<metrics_addr><path>`: status and body.
async fn probe(server: &TestServer, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", server.metrics_addr))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn readyz_waits_for_the_live_cluster_to_sync() {
    let api = FakeApiServer::start(
        "100",
        vec![namespace("team-a", "90", &[("team", "a")])],
        true,
    )
    .await;
    api.pods().hold_list();

    // Wired as `kadmit serve` wires a live cluster.
    let client = client_from_kubeconfig(Some(api.kubeconfig()))
        .await
        .unwrap();
    let live = LiveCluster::start(client);
    let synced = live.clone();
    let view = live.clone();
    let server = TestServer::start(TestOptions {
        cluster: Arc::new(live),
        readiness: Readiness::new(Arc::new(move || synced.is_synced())),
        ..TestOptions::default()
    })
    .await;

    // The watcher's initial list is in flight and held by the fake API server.
    api.namespaces()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    let (status, body) = probe(&server, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cluster caches are not synced yet"), "{body}");
    let (status, body) = probe(&server, "/healthz").await;
    assert_eq!(status, 200, "liveness does not depend on the cache: {body}");

    // The namespace cache syncs, but the pod list is still held: not ready.
    api.namespaces().release_list();
    api.pods().wait_for_request(1, |r| !r.is_watch()).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while view.namespace("team-a").is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the namespace cache never synced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = probe(&server, "/readyz").await;
    assert_eq!(status, 503, "ready before the pod cache synced: {body}");
    assert!(body.contains("cluster caches are not synced yet"), "{body}");

    api.pods().release_list();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = probe(&server, "/readyz").await;
        if status == 200 {
            assert_eq!(body.trim(), "ok");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still {status} {body:?} {DEADLINE:?} after the list was released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Synced from the list: the watch continues from its resourceVersion.
    let watch = api
        .namespaces()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    assert_eq!(watch.param("resourceVersion"), Some("100"));

    server.stop().await;
}
