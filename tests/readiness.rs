//! `/readyz` of a server wired to a live cluster view, as `kadmit serve` wires it: not ready
//! while a cache it runs (Namespaces, Pods, LimitRanges, Secrets, ...) has not synced, ready
//! once all have; caches the configuration turns off are not waited for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake_api::{DEADLINE, FakeApiServer, Recorded, namespace};
use common::{TestOptions, TestServer};
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::{AuthorizerSettings, Caches, client_from_kubeconfig};
use kadmit::server::state::Readiness;
use kadmit_core::{ClusterView, Config};

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

/// Polls `/readyz` until it answers 200 `ok`, failing at the deadline.
async fn wait_ready(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = probe(server, "/readyz").await;
        if status == 200 {
            assert_eq!(body.trim(), "ok");
            return;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still {status} {body:?} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn readyz_waits_for_the_caches_the_configuration_runs() {
    let api = FakeApiServer::start("100", vec![namespace("team-a", "90", &[])], false).await;
    api.limit_ranges().hold_list();
    api.secrets().hold_list();
    // GMSA is off: its held list must not keep the server unready.
    api.gmsa_specs().hold_list();
    let config = Config::from_yaml(
        "gmsa: {enabled: false}
imagePullSecrets:
  watchSecrets: true
  rules:
    - images: [\"registry.example.com/*\"]
      secrets: [regcred]
",
    )
    .unwrap();

    // Wired as `kadmit serve` wires a live cluster.
    let client = client_from_kubeconfig(Some(api.kubeconfig()))
        .await
        .unwrap();
    let live = LiveCluster::start_with_caches(
        client,
        Caches::for_config(&config),
        AuthorizerSettings::default(),
    );
    let synced = live.clone();
    let view = live.clone();
    let server = TestServer::start(TestOptions {
        config,
        cluster: Arc::new(live),
        readiness: Readiness::new(Arc::new(move || synced.is_synced())),
        ..TestOptions::default()
    })
    .await;

    // Namespaces and pods sync; LimitRanges and Secrets are held: not ready.
    api.limit_ranges()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    api.secrets().wait_for_request(1, |r| !r.is_watch()).await;
    api.pods().wait_for_request(1, Recorded::is_watch).await;
    let (status, body) = probe(&server, "/readyz").await;
    assert_eq!(status, 503, "ready before the LimitRange list: {body}");
    assert!(body.contains("cluster caches are not synced yet"), "{body}");

    // LimitRanges sync; Secrets are still held: not ready.
    api.limit_ranges().release_list();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while view.limit_ranges("team-a").is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the LimitRange cache never synced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = probe(&server, "/readyz").await;
    assert_eq!(status, 503, "ready before the Secret list: {body}");

    api.secrets().release_list();
    wait_ready(&server).await;
    assert_eq!(view.secret_exists("team-a", "regcred"), Ok(Some(false)));
    assert!(
        api.gmsa_specs().requests().is_empty(),
        "GMSA is off, yet its specs were requested"
    );

    server.stop().await;
}
