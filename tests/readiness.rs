//! `/readyz` of a server wired to a live cluster view, as `kadmit serve` wires it: not ready
//! while the Namespace cache has not synced, ready once it has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake_api::{DEADLINE, FakeApiServer, Recorded, namespace};
use common::{TestOptions, TestServer};
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::client_from_kubeconfig;
use kadmit::server::state::Readiness;

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

    // Wired as `kadmit serve` wires a live cluster.
    let client = client_from_kubeconfig(Some(api.kubeconfig()))
        .await
        .unwrap();
    let live = LiveCluster::start(client);
    let synced = live.clone();
    let server = TestServer::start(TestOptions {
        cluster: Arc::new(live),
        readiness: Readiness::new(Arc::new(move || synced.is_synced())),
        ..TestOptions::default()
    })
    .await;

    // The watcher's initial list is in flight and held by the fake API server.
    api.wait_for_request(1, |r| !r.is_watch()).await;
    let (status, body) = probe(&server, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cluster caches are not synced yet"), "{body}");
    let (status, body) = probe(&server, "/healthz").await;
    assert_eq!(status, 200, "liveness does not depend on the cache: {body}");

    api.release_list();
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
    let watch = api.wait_for_request(1, Recorded::is_watch).await;
    assert_eq!(watch.param("resourceVersion"), Some("100"));

    server.stop().await;
}
