//! The live cluster view against an in-test fake API server: initial sync, watch events,
//! stripping, and recovery after the API server expires the watch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::fake_api::{DEADLINE, FakeApiServer, Recorded, namespace};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::{LiveClusterError, client_from_kubeconfig};
use kadmit_core::{ClusterError, ClusterView};
use serde_json::json;

fn to_json(namespace: &Namespace) -> serde_json::Value {
    serde_json::to_value(namespace).unwrap()
}

fn labels_of(view: &LiveCluster, name: &str) -> Option<BTreeMap<String, String>> {
    view.namespace(name)
        .unwrap()
        .map(|ns| ns.metadata.labels.clone().unwrap_or_default())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Polls `condition` until it holds, failing the test with `what` at the deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kadmit=debug,kube_runtime=debug".into()),
        )
        .try_init();
}

async fn live_cluster(server: &FakeApiServer) -> LiveCluster {
    let client = client_from_kubeconfig(Some(server.kubeconfig()))
        .await
        .unwrap();
    LiveCluster::start(client)
}

async fn synced_live_cluster(server: &FakeApiServer) -> LiveCluster {
    let view = live_cluster(server).await;
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    view
}

#[tokio::test]
async fn not_synced_until_the_initial_list_completes() {
    init_tracing();
    let server = FakeApiServer::start(
        "100",
        vec![namespace("team-a", "90", &[("team", "a")])],
        true,
    )
    .await;
    let view = live_cluster(&server).await;

    // The watcher's list request is in flight and held by the server.
    let list = server.wait_for_request(1, |r| !r.is_watch()).await;
    assert_eq!(list.path, "/api/v1/namespaces");
    assert!(!view.is_synced());
    assert_eq!(
        view.namespace("team-a"),
        Err(ClusterError::NotSynced {
            resource: "namespaces"
        })
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(50), view.wait_synced())
            .await
            .is_err(),
        "wait_synced returned before the list was answered"
    );

    server.release_list();
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    assert!(view.is_synced());
    assert_eq!(labels_of(&view, "team-a"), Some(labels(&[("team", "a")])));
    assert_eq!(view.namespace("absent").unwrap(), None);

    // Clones share the cache.
    let clone = view.clone();
    assert!(clone.is_synced());
    assert!(clone.namespace("team-a").unwrap().is_some());

    // The watch continues from the list's resourceVersion, so no event is missed in between.
    let watch = server.wait_for_request(1, Recorded::is_watch).await;
    assert_eq!(watch.param("resourceVersion"), Some("100"));
}

#[tokio::test]
async fn watch_events_are_reflected_in_lookups() {
    init_tracing();
    let server = FakeApiServer::start(
        "100",
        vec![namespace("team-a", "90", &[("team", "a")])],
        false,
    )
    .await;
    let view = synced_live_cluster(&server).await;
    assert_eq!(view.namespace("team-b").unwrap(), None);

    server
        .send_event(
            "ADDED",
            to_json(&namespace("team-b", "101", &[("team", "b")])),
        )
        .await;
    eventually("team-b is added", || {
        labels_of(&view, "team-b") == Some(labels(&[("team", "b")]))
    })
    .await;

    server
        .send_event(
            "MODIFIED",
            to_json(&namespace(
                "team-b",
                "102",
                &[
                    ("team", "b"),
                    ("pod-security.kubernetes.io/enforce", "restricted"),
                ],
            )),
        )
        .await;
    eventually("team-b's labels change", || {
        labels_of(&view, "team-b")
            == Some(labels(&[
                ("team", "b"),
                ("pod-security.kubernetes.io/enforce", "restricted"),
            ]))
    })
    .await;

    server
        .send_event(
            "DELETED",
            to_json(&namespace("team-b", "103", &[("team", "b")])),
        )
        .await;
    eventually("team-b is deleted", || {
        view.namespace("team-b").unwrap().is_none()
    })
    .await;
    assert_eq!(labels_of(&view, "team-a"), Some(labels(&[("team", "a")])));
    assert!(view.is_synced());
}

#[tokio::test]
async fn managed_fields_and_last_applied_are_stripped() {
    init_tracing();
    let bulky = |name: &str, resource_version: &str| {
        let mut ns = namespace(name, resource_version, &[("team", "a")]);
        ns.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubectl".to_owned()),
            operation: Some("Apply".to_owned()),
            ..ManagedFieldsEntry::default()
        }]);
        ns.metadata.annotations = Some(BTreeMap::from([
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                r#"{"apiVersion":"v1","kind":"Namespace"}"#.to_owned(),
            ),
            ("owner".to_owned(), "platform".to_owned()),
        ]));
        ns
    };
    let server = FakeApiServer::start("100", vec![bulky("listed", "90")], false).await;
    let view = synced_live_cluster(&server).await;
    server
        .send_event("ADDED", to_json(&bulky("watched", "101")))
        .await;
    eventually("the watched namespace arrives", || {
        view.namespace("watched").unwrap().is_some()
    })
    .await;

    for name in ["listed", "watched"] {
        let ns = view.namespace(name).unwrap().unwrap();
        assert_eq!(ns.metadata.managed_fields, None, "{name}");
        assert_eq!(
            ns.metadata.annotations,
            Some(BTreeMap::from([(
                "owner".to_owned(),
                "platform".to_owned()
            )])),
            "{name}"
        );
        assert_eq!(ns.metadata.labels, Some(labels(&[("team", "a")])), "{name}");
    }
}

#[tokio::test]
async fn recovers_from_a_closed_watch_and_an_expired_resource_version() {
    init_tracing();
    let server = FakeApiServer::start(
        "100",
        vec![namespace("team-a", "90", &[("team", "a")])],
        false,
    )
    .await;
    let view = synced_live_cluster(&server).await;

    // The API server ends the watch (as on timeoutSeconds): the watcher re-watches from the
    // last resourceVersion it saw, without re-listing.
    server
        .send_event("ADDED", to_json(&namespace("team-b", "105", &[])))
        .await;
    eventually("team-b is added", || {
        view.namespace("team-b").unwrap().is_some()
    })
    .await;
    server.close_watches();
    let rewatch = server.wait_for_request(2, Recorded::is_watch).await;
    assert_eq!(rewatch.param("resourceVersion"), Some("105"));

    // The resourceVersion expired: the watcher reports the error, backs off and re-lists.
    // Meanwhile (the re-list is held) the cache keeps answering from its last contents.
    server.hold_list();
    server.set_list(
        "200",
        vec![
            namespace("team-a", "190", &[("team", "a2")]),
            namespace("team-c", "195", &[]),
        ],
    );
    server
        .send_event(
            "ERROR",
            json!({
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "message": "too old resource version: 105 (150)",
                "reason": "Expired",
                "code": 410,
            }),
        )
        .await;
    server.wait_for_request(2, |r| !r.is_watch()).await;
    assert!(view.is_synced());
    assert!(view.namespace("team-b").unwrap().is_some());
    server.release_list();
    eventually("the re-list replaces the cache", || {
        labels_of(&view, "team-a") == Some(labels(&[("team", "a2")]))
    })
    .await;
    assert!(view.is_synced());
    assert!(view.namespace("team-c").unwrap().is_some());
    assert_eq!(
        view.namespace("team-b").unwrap(),
        None,
        "an object missing from the re-list is gone"
    );
    let watch = server.wait_for_request(3, Recorded::is_watch).await;
    assert_eq!(watch.param("resourceVersion"), Some("200"));
}

#[tokio::test]
async fn a_missing_kubeconfig_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let Err(error) = client_from_kubeconfig(Some(&path)).await else {
        panic!("a client was built from a missing kubeconfig");
    };
    assert!(
        matches!(&error, LiveClusterError::ReadKubeconfig { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert!(error.to_string().contains(&*path.to_string_lossy()));
}

#[tokio::test]
async fn dropping_the_last_clone_stops_watching() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let view = synced_live_cluster(&server).await;
    let clone = view.clone();
    server.wait_for_request(1, Recorded::is_watch).await;
    let watch = server.open_watches().remove(0);

    drop(view);
    assert!(clone.is_synced(), "a remaining clone keeps the cache alive");
    assert!(!watch.is_closed());

    drop(clone);
    tokio::time::timeout(DEADLINE, watch.closed())
        .await
        .expect("the watch connection stayed open after the view was dropped");
}
