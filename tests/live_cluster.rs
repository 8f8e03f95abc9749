//! The live cluster view against an in-test fake API server: initial sync, watch events,
//! stripping, and recovery after the API server expires the watch, for Namespaces, Pods,
//! GMSACredentialSpecs (including a cluster without the GMSA CRD), LimitRanges and Secret
//! names (metadata only); and which caches run, as the configuration says. Authorization is in
//! `live_authorizer.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::fake_api::{
    DEADLINE, FakeApiServer, METADATA_LIST, METADATA_OBJECT, Recorded, gmsa_spec, limit_range,
    namespace, pod, secret,
};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ManagedFieldsEntry, ObjectMeta, OwnerReference,
};
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::{AuthorizerSettings, Caches, LiveClusterError, client_from_kubeconfig};
use kadmit_core::{ClusterError, ClusterView};
use serde_json::json;

fn to_json(object: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(object).unwrap()
}

/// The names of the cached pods in `namespace`, sorted.
fn pod_names(view: &LiveCluster, namespace: &str) -> Vec<String> {
    let mut names: Vec<String> = view
        .pods(namespace)
        .unwrap()
        .iter()
        .map(|pod| {
            assert_eq!(pod.metadata.namespace.as_deref(), Some(namespace));
            pod.metadata.name.clone().unwrap()
        })
        .collect();
    names.sort();
    names
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

/// A live view of `server` running only `caches` (and the namespace cache).
async fn live_cluster_with(server: &FakeApiServer, caches: Caches) -> LiveCluster {
    let client = client_from_kubeconfig(Some(server.kubeconfig()))
        .await
        .unwrap();
    let view = LiveCluster::start_with_caches(client, caches, AuthorizerSettings::default());
    assert_eq!(view.caches(), caches);
    view
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
    let list = server
        .namespaces()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
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

    server.namespaces().release_list();
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
    let watch = server
        .namespaces()
        .wait_for_request(1, Recorded::is_watch)
        .await;
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
        .namespaces()
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
        .namespaces()
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
        .namespaces()
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
        .namespaces()
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
        .namespaces()
        .send_event("ADDED", to_json(&namespace("team-b", "105", &[])))
        .await;
    eventually("team-b is added", || {
        view.namespace("team-b").unwrap().is_some()
    })
    .await;
    server.namespaces().close_watches();
    let rewatch = server
        .namespaces()
        .wait_for_request(2, Recorded::is_watch)
        .await;
    assert_eq!(rewatch.param("resourceVersion"), Some("105"));

    // The resourceVersion expired: the watcher reports the error, backs off and re-lists.
    // Meanwhile (the re-list is held) the cache keeps answering from its last contents.
    server.namespaces().hold_list();
    server.namespaces().set_list(
        "200",
        vec![
            namespace("team-a", "190", &[("team", "a2")]),
            namespace("team-c", "195", &[]),
        ],
    );
    server
        .namespaces()
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
    server
        .namespaces()
        .wait_for_request(2, |r| !r.is_watch())
        .await;
    assert!(view.is_synced());
    assert!(view.namespace("team-b").unwrap().is_some());
    server.namespaces().release_list();
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
    let watch = server
        .namespaces()
        .wait_for_request(3, Recorded::is_watch)
        .await;
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
    server
        .namespaces()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    server.pods().wait_for_request(1, Recorded::is_watch).await;
    server
        .gmsa_specs()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    server
        .limit_ranges()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    server
        .secrets()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    let namespace_watch = server.namespaces().open_watches().remove(0);
    let pod_watch = server.pods().open_watches().remove(0);
    let gmsa_watch = server.gmsa_specs().open_watches().remove(0);
    let limit_range_watch = server.limit_ranges().open_watches().remove(0);
    let secret_watch = server.secrets().open_watches().remove(0);

    drop(view);
    assert!(clone.is_synced(), "a remaining clone keeps the cache alive");
    assert!(!namespace_watch.is_closed());
    assert!(!pod_watch.is_closed());
    assert!(!gmsa_watch.is_closed());
    assert!(!limit_range_watch.is_closed());
    assert!(!secret_watch.is_closed());

    drop(clone);
    for watch in [
        namespace_watch,
        pod_watch,
        gmsa_watch,
        limit_range_watch,
        secret_watch,
    ] {
        tokio::time::timeout(DEADLINE, watch.closed())
            .await
            .expect("a watch connection stayed open after the view was dropped");
    }
}

#[tokio::test]
async fn pods_are_not_synced_until_the_pod_list_completes() {
    init_tracing();
    let server = FakeApiServer::start(
        "100",
        vec![namespace("team-a", "90", &[("team", "a")])],
        false,
    )
    .await;
    server.pods().hold_list();
    server
        .pods()
        .set_list("300", vec![pod("team-a", "web", "290")]);
    let view = live_cluster(&server).await;

    // The namespace cache syncs; the pod list is held, so the view as a whole is not synced.
    let list = server.pods().wait_for_request(1, |r| !r.is_watch()).await;
    assert_eq!(list.path, "/api/v1/pods");
    eventually("the namespace cache syncs", || {
        view.namespace("team-a").is_ok()
    })
    .await;
    assert_eq!(
        view.pods("team-a"),
        Err(ClusterError::NotSynced { resource: "pods" })
    );
    assert!(!view.is_synced());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), view.wait_synced())
            .await
            .is_err(),
        "wait_synced returned before the pod list was answered"
    );

    server.pods().release_list();
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    assert!(view.is_synced());
    assert_eq!(pod_names(&view, "team-a"), ["web"]);
    let watch = server.pods().wait_for_request(1, Recorded::is_watch).await;
    assert_eq!(watch.path, "/api/v1/pods");
    assert_eq!(watch.param("resourceVersion"), Some("300"));
}

#[tokio::test]
async fn pods_listed_and_watched_are_returned_for_their_namespace_only() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.pods().set_list(
        "300",
        vec![
            pod("team-a", "web", "281"),
            pod("team-a", "db", "282"),
            // Same name in another namespace: a different pod.
            pod("team-b", "web", "283"),
        ],
    );
    let view = synced_live_cluster(&server).await;
    assert_eq!(pod_names(&view, "team-a"), ["db", "web"]);
    assert_eq!(pod_names(&view, "team-b"), ["web"]);
    assert_eq!(pod_names(&view, "team-c"), Vec::<String>::new());
    // Not a prefix or pattern match.
    assert_eq!(pod_names(&view, "team"), Vec::<String>::new());

    server
        .pods()
        .send_event("ADDED", to_json(&pod("team-c", "worker", "301")))
        .await;
    eventually("the added pod appears in team-c", || {
        pod_names(&view, "team-c") == ["worker"]
    })
    .await;
    assert_eq!(pod_names(&view, "team-a"), ["db", "web"]);
    assert_eq!(pod_names(&view, "team-b"), ["web"]);

    server
        .pods()
        .send_event("DELETED", to_json(&pod("team-a", "web", "302")))
        .await;
    eventually("the deleted pod leaves team-a", || {
        pod_names(&view, "team-a") == ["db"]
    })
    .await;
    assert_eq!(
        pod_names(&view, "team-b"),
        ["web"],
        "deleting team-a/web leaves team-b/web"
    );
    assert_eq!(pod_names(&view, "team-c"), ["worker"]);

    // Pod events do not disturb the namespace cache, and the reverse.
    server
        .namespaces()
        .send_event("ADDED", to_json(&namespace("team-c", "101", &[])))
        .await;
    eventually("team-c is added", || {
        view.namespace("team-c").unwrap().is_some()
    })
    .await;
    assert_eq!(pod_names(&view, "team-c"), ["worker"]);
    assert!(view.is_synced());
}

#[tokio::test]
async fn pod_status_and_bookkeeping_are_stripped() {
    init_tracing();
    let bulky = |name: &str, resource_version: &str| {
        let mut pod = pod("team-a", name, resource_version);
        let meta = &mut pod.metadata;
        meta.uid = Some(format!("uid-{name}"));
        meta.generate_name = Some("web-".to_owned());
        meta.finalizers = Some(vec!["example.com/keep".to_owned()]);
        meta.labels = Some(labels(&[("app", "web")]));
        meta.annotations = Some(BTreeMap::from([
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                r#"{"apiVersion":"v1","kind":"Pod"}"#.to_owned(),
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/app".to_owned(),
                "runtime/default".to_owned(),
            ),
        ]));
        meta.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubelet".to_owned()),
            operation: Some("Update".to_owned()),
            subresource: Some("status".to_owned()),
            ..ManagedFieldsEntry::default()
        }]);
        meta.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: "ReplicaSet".to_owned(),
            name: "web-5d8f".to_owned(),
            uid: "rs-uid".to_owned(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        pod.status = Some(PodStatus {
            phase: Some("Running".to_owned()),
            pod_ip: Some("10.0.0.7".to_owned()),
            ..PodStatus::default()
        });
        pod
    };
    let server = FakeApiServer::start("100", vec![], false).await;
    server.pods().set_list("300", vec![bulky("listed", "290")]);
    let view = synced_live_cluster(&server).await;
    server
        .pods()
        .send_event("ADDED", to_json(&bulky("watched", "301")))
        .await;
    eventually("the watched pod arrives", || {
        pod_names(&view, "team-a").len() == 2
    })
    .await;

    for cached in view.pods("team-a").unwrap() {
        let name = cached.metadata.name.clone().unwrap();
        let original = bulky(&name, "0");
        let expected = Pod {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("team-a".to_owned()),
                labels: original.metadata.labels.clone(),
                annotations: Some(BTreeMap::from([(
                    "container.apparmor.security.beta.kubernetes.io/app".to_owned(),
                    "runtime/default".to_owned(),
                )])),
                owner_references: original.metadata.owner_references.clone(),
                ..ObjectMeta::default()
            },
            spec: original.spec.clone(),
            status: None,
        };
        assert_eq!(*cached, expected, "{name}");
    }
}

/// The credspec of the cached GMSACredentialSpec `name`, checking the name it carries.
fn credspec_of(view: &LiveCluster, name: &str) -> Option<serde_json::Value> {
    view.gmsa_credential_spec(name).unwrap().map(|spec| {
        assert_eq!(spec.name, name);
        spec.credspec
            .clone()
            .expect("the cached spec has no credspec")
    })
}

fn credspec(account: &str) -> serde_json::Value {
    json!({
        "CmsPlugins": ["ActiveDirectory"],
        "DomainJoinConfig": {
            "DnsName": "contoso.com",
            "MachineAccountName": account,
            "NetBiosName": "CONTOSO",
        },
        "ActiveDirectoryConfig": {
            "GroupManagedServiceAccounts": [{ "Name": account, "Scope": "contoso.com" }],
        },
    })
}

#[tokio::test]
async fn gmsa_specs_listed_watched_and_deleted_are_visible_by_name() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let mut no_credspec = gmsa_spec("empty", "402", json!(null));
    no_credspec.as_object_mut().unwrap().remove("credspec");
    server.gmsa_specs().set_list(
        "400",
        vec![
            gmsa_spec("webapp1", "401", credspec("WebApp1")),
            no_credspec,
        ],
    );
    let view = synced_live_cluster(&server).await;
    let list = server
        .gmsa_specs()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    assert_eq!(list.path, "/apis/windows.k8s.io/v1/gmsacredentialspecs");

    assert_eq!(credspec_of(&view, "webapp1"), Some(credspec("WebApp1")));
    let empty = view.gmsa_credential_spec("empty").unwrap().unwrap();
    assert_eq!(empty.name, "empty");
    assert_eq!(empty.credspec, None, "an object without credspec has none");
    assert_eq!(view.gmsa_credential_spec("absent").unwrap(), None);
    // Names are exact: no case folding, no prefix match.
    assert_eq!(view.gmsa_credential_spec("WebApp1").unwrap(), None);
    assert_eq!(view.gmsa_credential_spec("webapp").unwrap(), None);
    // Lookups share the cached value rather than copying the JSON.
    assert!(Arc::ptr_eq(
        &view.gmsa_credential_spec("webapp1").unwrap().unwrap(),
        &view.gmsa_credential_spec("webapp1").unwrap().unwrap()
    ));

    // The watch continues from the list's resourceVersion.
    let watch = server
        .gmsa_specs()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    assert_eq!(watch.param("resourceVersion"), Some("400"));

    server
        .gmsa_specs()
        .send_event("ADDED", gmsa_spec("webapp2", "403", credspec("WebApp2")))
        .await;
    eventually("webapp2 is added", || {
        credspec_of(&view, "webapp2") == Some(credspec("WebApp2"))
    })
    .await;

    server
        .gmsa_specs()
        .send_event(
            "MODIFIED",
            gmsa_spec("webapp1", "404", credspec("WebApp1b")),
        )
        .await;
    eventually("webapp1's credspec changes", || {
        credspec_of(&view, "webapp1") == Some(credspec("WebApp1b"))
    })
    .await;

    server
        .gmsa_specs()
        .send_event("DELETED", gmsa_spec("webapp1", "405", credspec("WebApp1b")))
        .await;
    eventually("webapp1 is deleted", || {
        credspec_of(&view, "webapp1").is_none()
    })
    .await;
    assert_eq!(credspec_of(&view, "webapp2"), Some(credspec("WebApp2")));

    // GMSA events do not disturb the other caches.
    assert_eq!(view.namespace("absent").unwrap(), None);
    assert!(view.is_synced());
}

#[tokio::test]
async fn gmsa_specs_are_not_synced_until_their_list_completes() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.gmsa_specs().hold_list();
    server.gmsa_specs().set_list(
        "400",
        vec![gmsa_spec("webapp1", "401", credspec("WebApp1"))],
    );
    let view = live_cluster(&server).await;

    server
        .gmsa_specs()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    eventually("the pod cache syncs", || view.pods("default").is_ok()).await;
    assert_eq!(
        view.gmsa_credential_spec("webapp1"),
        Err(ClusterError::NotSynced {
            resource: "gmsacredentialspecs"
        })
    );
    assert!(!view.is_synced());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), view.wait_synced())
            .await
            .is_err(),
        "wait_synced returned before the GMSA list was answered"
    );

    server.gmsa_specs().release_list();
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    assert_eq!(credspec_of(&view, "webapp1"), Some(credspec("WebApp1")));
}

#[tokio::test]
async fn a_missing_gmsa_crd_counts_as_synced_with_no_specs_until_it_is_installed() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.gmsa_specs().set_missing(true);
    let view = synced_live_cluster(&server).await;
    assert!(view.is_synced());
    assert_eq!(view.gmsa_credential_spec("webapp1").unwrap(), None);
    let first = server
        .gmsa_specs()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    assert_eq!(first.path, "/apis/windows.k8s.io/v1/gmsacredentialspecs");

    // The watcher keeps retrying in the background (with backoff) ...
    server
        .gmsa_specs()
        .wait_for_request(2, |r| !r.is_watch())
        .await;
    assert!(view.is_synced(), "a retried 404 keeps the cache synced");
    assert_eq!(view.gmsa_credential_spec("webapp1").unwrap(), None);

    // ... so specs appear once the CRD is installed.
    server.gmsa_specs().set_list(
        "500",
        vec![gmsa_spec("webapp1", "501", credspec("WebApp1"))],
    );
    server.gmsa_specs().set_missing(false);
    eventually("the spec appears after the CRD is installed", || {
        credspec_of(&view, "webapp1") == Some(credspec("WebApp1"))
    })
    .await;
    let watch = server
        .gmsa_specs()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    assert_eq!(watch.param("resourceVersion"), Some("500"));

    // The CRD is removed (its objects with it): the watch ends and cannot restart, and the
    // cache empties rather than serving specs that no longer exist.
    server.gmsa_specs().set_missing(true);
    server.gmsa_specs().close_watches();
    server
        .gmsa_specs()
        .wait_for_request(2, Recorded::is_watch)
        .await;
    eventually("the removed CRD's specs are gone", || {
        view.gmsa_credential_spec("webapp1").unwrap().is_none()
    })
    .await;
    assert!(view.is_synced());

    // Other caches are unaffected throughout.
    assert_eq!(view.namespace("absent").unwrap(), None);
}

#[tokio::test]
async fn a_forbidden_gmsa_list_does_not_count_as_synced() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    // Unlike a missing CRD, missing permissions are a misconfiguration: stay unready.
    server.gmsa_specs().set_failure(Some(403));
    let view = live_cluster(&server).await;
    server
        .gmsa_specs()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    eventually("the pod cache syncs", || view.pods("default").is_ok()).await;
    // Let the watcher handle the error (and retry once) before looking.
    server
        .gmsa_specs()
        .wait_for_request(2, |r| !r.is_watch())
        .await;
    assert_eq!(
        view.gmsa_credential_spec("webapp1"),
        Err(ClusterError::NotSynced {
            resource: "gmsacredentialspecs"
        })
    );
    assert!(!view.is_synced());

    server.gmsa_specs().set_failure(None);
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced once the list was allowed")
        .unwrap();
    assert_eq!(view.gmsa_credential_spec("webapp1").unwrap(), None);
}

/// The names of the cached LimitRanges of `namespace`, in the order returned, checking that
/// each belongs to `namespace`.
fn limit_range_names(view: &LiveCluster, namespace: &str) -> Vec<String> {
    view.limit_ranges(namespace)
        .unwrap()
        .iter()
        .map(|limit_range| {
            assert_eq!(limit_range.metadata.namespace.as_deref(), Some(namespace));
            limit_range.metadata.name.clone().unwrap()
        })
        .collect()
}

/// The default CPU limit of the cached LimitRange `namespace/name`.
fn default_cpu(view: &LiveCluster, namespace: &str, name: &str) -> Option<String> {
    view.limit_ranges(namespace)
        .unwrap()
        .iter()
        .find(|limit_range| limit_range.metadata.name.as_deref() == Some(name))
        .map(|limit_range| {
            let limits = &limit_range.spec.as_ref().unwrap().limits;
            limits[0].default.as_ref().unwrap()["cpu"].0.clone()
        })
}

#[tokio::test]
async fn limit_ranges_are_returned_for_their_namespace_sorted_by_name() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.limit_ranges().set_list(
        "600",
        vec![
            limit_range("team-a", "zeta", "591", "2"),
            limit_range("team-a", "alpha", "592", "1"),
            limit_range("team-a", "mid", "593", "500m"),
            // Same name in another namespace: a different object.
            limit_range("team-b", "alpha", "594", "3"),
        ],
    );
    let view = synced_live_cluster(&server).await;
    let list = server
        .limit_ranges()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    assert_eq!(list.path, "/api/v1/limitranges");

    assert_eq!(limit_range_names(&view, "team-a"), ["alpha", "mid", "zeta"]);
    assert_eq!(limit_range_names(&view, "team-b"), ["alpha"]);
    assert_eq!(limit_range_names(&view, "team-c"), Vec::<String>::new());
    assert_eq!(limit_range_names(&view, "team"), Vec::<String>::new());
    assert_eq!(default_cpu(&view, "team-a", "alpha").as_deref(), Some("1"));
    assert_eq!(default_cpu(&view, "team-b", "alpha").as_deref(), Some("3"));
    // Stored as the API server serves them, without managed fields.
    let alpha = view.limit_ranges("team-a").unwrap().remove(0);
    let mut expected = limit_range("team-a", "alpha", "592", "1");
    expected.metadata.managed_fields = None;
    assert_eq!(*alpha, expected);

    // The watch continues from the list's resourceVersion.
    let watch = server
        .limit_ranges()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    assert_eq!(watch.param("resourceVersion"), Some("600"));

    server
        .limit_ranges()
        .send_event("ADDED", to_json(&limit_range("team-a", "beta", "601", "4")))
        .await;
    eventually("beta is added in order", || {
        limit_range_names(&view, "team-a") == ["alpha", "beta", "mid", "zeta"]
    })
    .await;
    assert!(
        view.limit_ranges("team-a").unwrap()[1]
            .metadata
            .managed_fields
            .is_none(),
        "a watched LimitRange is stripped too"
    );

    server
        .limit_ranges()
        .send_event(
            "MODIFIED",
            to_json(&limit_range("team-a", "alpha", "602", "750m")),
        )
        .await;
    eventually("alpha's default changes", || {
        default_cpu(&view, "team-a", "alpha").as_deref() == Some("750m")
    })
    .await;
    assert_eq!(default_cpu(&view, "team-b", "alpha").as_deref(), Some("3"));

    server
        .limit_ranges()
        .send_event(
            "DELETED",
            to_json(&limit_range("team-a", "zeta", "603", "2")),
        )
        .await;
    eventually("zeta is deleted", || {
        limit_range_names(&view, "team-a") == ["alpha", "beta", "mid"]
    })
    .await;

    server
        .limit_ranges()
        .send_event(
            "DELETED",
            to_json(&limit_range("team-b", "alpha", "604", "3")),
        )
        .await;
    server
        .limit_ranges()
        .send_event("ADDED", to_json(&limit_range("team-c", "only", "605", "1")))
        .await;
    eventually("team-b's last LimitRange goes and team-c gets one", || {
        limit_range_names(&view, "team-b").is_empty()
            && limit_range_names(&view, "team-c") == ["only"]
    })
    .await;
    assert_eq!(limit_range_names(&view, "team-a"), ["alpha", "beta", "mid"]);
    assert!(view.is_synced());
}

#[tokio::test]
async fn limit_ranges_are_not_synced_until_their_list_completes() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.limit_ranges().hold_list();
    server
        .limit_ranges()
        .set_list("600", vec![limit_range("team-a", "defaults", "590", "1")]);
    let view = live_cluster(&server).await;

    server
        .limit_ranges()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    eventually("the pod cache syncs", || view.pods("default").is_ok()).await;
    assert_eq!(
        view.limit_ranges("team-a"),
        Err(ClusterError::NotSynced {
            resource: "limitranges"
        })
    );
    assert!(!view.is_synced());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), view.wait_synced())
            .await
            .is_err(),
        "wait_synced returned before the LimitRange list was answered"
    );

    server.limit_ranges().release_list();
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    assert!(view.is_synced());
    assert_eq!(limit_range_names(&view, "team-a"), ["defaults"]);
}

#[tokio::test]
async fn a_limit_range_relist_replaces_the_cache() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.limit_ranges().set_list(
        "600",
        vec![
            limit_range("team-a", "kept", "591", "1"),
            limit_range("team-a", "gone", "592", "1"),
            limit_range("team-b", "gone-too", "593", "1"),
        ],
    );
    let view = synced_live_cluster(&server).await;
    assert_eq!(limit_range_names(&view, "team-a"), ["gone", "kept"]);

    // The watch is closed; it resumes from the last resourceVersion, without a re-list.
    server
        .limit_ranges()
        .send_event("ADDED", to_json(&limit_range("team-c", "new", "605", "1")))
        .await;
    eventually("team-c/new is added", || {
        limit_range_names(&view, "team-c") == ["new"]
    })
    .await;
    server.limit_ranges().close_watches();
    let rewatch = server
        .limit_ranges()
        .wait_for_request(2, Recorded::is_watch)
        .await;
    assert_eq!(rewatch.param("resourceVersion"), Some("605"));

    // Meanwhile objects were deleted and changed, and the resourceVersion expired: the
    // watcher re-lists. While the re-list is held, the cache keeps its last contents.
    server.limit_ranges().hold_list();
    server.limit_ranges().set_list(
        "700",
        vec![
            limit_range("team-a", "kept", "690", "2"),
            limit_range("team-d", "fresh", "695", "1"),
        ],
    );
    server
        .limit_ranges()
        .send_event(
            "ERROR",
            json!({
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "message": "too old resource version: 605 (650)",
                "reason": "Expired",
                "code": 410,
            }),
        )
        .await;
    server
        .limit_ranges()
        .wait_for_request(2, |r| !r.is_watch())
        .await;
    assert!(view.is_synced());
    assert_eq!(limit_range_names(&view, "team-a"), ["gone", "kept"]);

    server.limit_ranges().release_list();
    eventually("the re-list replaces the cache", || {
        default_cpu(&view, "team-a", "kept").as_deref() == Some("2")
    })
    .await;
    assert_eq!(
        limit_range_names(&view, "team-a"),
        ["kept"],
        "an object missing from the re-list is gone"
    );
    assert_eq!(limit_range_names(&view, "team-b"), Vec::<String>::new());
    assert_eq!(limit_range_names(&view, "team-c"), Vec::<String>::new());
    assert_eq!(limit_range_names(&view, "team-d"), ["fresh"]);
    assert!(view.is_synced());
    let watch = server
        .limit_ranges()
        .wait_for_request(3, Recorded::is_watch)
        .await;
    assert_eq!(watch.param("resourceVersion"), Some("700"));
}

#[tokio::test]
async fn secrets_are_not_requested_unless_watched() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server
        .secrets()
        .set_list("800", vec![secret("team-a", "regcred", "790")]);
    let view = live_cluster_with(
        &server,
        Caches {
            secrets: false,
            ..Caches::all()
        },
    )
    .await;
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    assert_eq!(view.secret_exists("team-a", "regcred"), Ok(None));
    assert_eq!(view.secret_exists("team-a", "absent"), Ok(None));

    // Every running cache has listed and is watching; still nothing asked for Secrets.
    server
        .limit_ranges()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    server.pods().wait_for_request(1, Recorded::is_watch).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        server.secrets().requests().is_empty(),
        "{:?}",
        server.secrets().requests()
    );
}

#[tokio::test]
async fn secret_names_are_watched_as_metadata_only() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.secrets().hold_list();
    server.secrets().set_list(
        "800",
        vec![
            secret("team-a", "regcred", "791"),
            secret("team-b", "other", "792"),
        ],
    );
    let view = live_cluster_with(
        &server,
        Caches {
            pods: false,
            gmsa_credential_specs: false,
            limit_ranges: false,
            secrets: true,
        },
    )
    .await;

    // The list asks for metadata only, so Secret data never leaves the API server.
    let list = server
        .secrets()
        .wait_for_request(1, |r| !r.is_watch())
        .await;
    assert_eq!(list.path, "/api/v1/secrets");
    assert_eq!(list.accept.as_deref(), Some(METADATA_LIST));
    eventually("the namespace cache syncs", || {
        view.namespace("absent").is_ok()
    })
    .await;
    assert_eq!(
        view.secret_exists("team-a", "regcred"),
        Err(ClusterError::NotSynced {
            resource: "secrets"
        })
    );
    assert!(!view.is_synced());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), view.wait_synced())
            .await
            .is_err(),
        "wait_synced returned before the Secret list was answered"
    );

    server.secrets().release_list();
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    assert_eq!(view.secret_exists("team-a", "regcred"), Ok(Some(true)));
    assert_eq!(view.secret_exists("team-b", "other"), Ok(Some(true)));
    // Exact namespace and name.
    assert_eq!(view.secret_exists("team-b", "regcred"), Ok(Some(false)));
    assert_eq!(view.secret_exists("team-a", "other"), Ok(Some(false)));
    assert_eq!(view.secret_exists("team-a", "regcre"), Ok(Some(false)));
    assert_eq!(view.secret_exists("team-c", "regcred"), Ok(Some(false)));

    let watch = server
        .secrets()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    assert_eq!(watch.accept.as_deref(), Some(METADATA_OBJECT));
    assert_eq!(watch.param("resourceVersion"), Some("800"));

    server
        .secrets()
        .send_event("ADDED", to_json(&secret("team-c", "regcred", "801")))
        .await;
    eventually("team-c/regcred appears", || {
        view.secret_exists("team-c", "regcred") == Ok(Some(true))
    })
    .await;
    server
        .secrets()
        .send_event("DELETED", to_json(&secret("team-a", "regcred", "802")))
        .await;
    eventually("team-a/regcred disappears", || {
        view.secret_exists("team-a", "regcred") == Ok(Some(false))
    })
    .await;
    assert_eq!(view.secret_exists("team-c", "regcred"), Ok(Some(true)));
    assert_eq!(view.secret_exists("team-b", "other"), Ok(Some(true)));
    assert!(view.is_synced());
    assert!(
        server
            .secrets()
            .requests()
            .iter()
            .all(|r| r.accept.as_deref() == Some(METADATA_LIST)
                || r.accept.as_deref() == Some(METADATA_OBJECT)),
        "every Secret request asked for metadata only: {:?}",
        server.secrets().requests()
    );
}

#[tokio::test]
async fn caches_turned_off_are_never_requested_and_answer_not_tracked() {
    init_tracing();
    let server = FakeApiServer::start(
        "100",
        vec![namespace("team-a", "90", &[("team", "a")])],
        false,
    )
    .await;
    // Held lists would keep the view unready, were they requested.
    server.pods().hold_list();
    server.gmsa_specs().hold_list();
    server.limit_ranges().hold_list();
    server.secrets().hold_list();
    server
        .pods()
        .set_list("300", vec![pod("team-a", "web", "290")]);
    server
        .limit_ranges()
        .set_list("600", vec![limit_range("team-a", "defaults", "590", "1")]);
    let view = live_cluster_with(
        &server,
        Caches {
            pods: false,
            gmsa_credential_specs: false,
            limit_ranges: false,
            secrets: false,
        },
    )
    .await;
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("the namespace cache alone never synced")
        .unwrap();
    assert!(view.is_synced());
    assert!(view.namespace("team-a").unwrap().is_some());
    assert_eq!(view.pods("team-a"), Ok(Vec::new()));
    assert_eq!(view.gmsa_credential_spec("webapp1"), Ok(None));
    assert_eq!(view.limit_ranges("team-a"), Ok(Vec::new()));
    assert_eq!(view.secret_exists("team-a", "regcred"), Ok(None));

    server
        .namespaces()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.pods().requests().is_empty());
    assert!(server.gmsa_specs().requests().is_empty());
    assert!(server.limit_ranges().requests().is_empty());
    assert!(server.secrets().requests().is_empty());
}

#[tokio::test]
async fn gmsa_disabled_makes_no_request_for_specs() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let config = kadmit_core::Config::from_yaml("gmsa: {enabled: false}\n").unwrap();
    let caches = Caches::for_config(&config);
    assert!(!caches.gmsa_credential_specs);
    let view = live_cluster_with(&server, caches).await;
    tokio::time::timeout(DEADLINE, view.wait_synced())
        .await
        .expect("live cluster never synced")
        .unwrap();
    assert_eq!(view.gmsa_credential_spec("webapp1"), Ok(None));
    server.pods().wait_for_request(1, Recorded::is_watch).await;
    server
        .limit_ranges()
        .wait_for_request(1, Recorded::is_watch)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.gmsa_specs().requests().is_empty());
    assert!(server.secrets().requests().is_empty());
}

#[test]
fn caches_follow_the_configuration() {
    let caches = |yaml: &str| Caches::for_config(&kadmit_core::Config::from_yaml(yaml).unwrap());
    assert_eq!(
        caches("{}"),
        Caches {
            pods: true,
            gmsa_credential_specs: true,
            limit_ranges: true,
            secrets: false,
        },
        "by default: everything but Secrets"
    );
    assert_eq!(
        caches(
            "podSecurity: {enabled: false}\ngmsa: {enabled: false}\n\
             defaultResources: {limitRanges: false}\n"
        ),
        Caches {
            pods: false,
            gmsa_credential_specs: false,
            limit_ranges: false,
            secrets: false,
        }
    );
    let rules = "  rules:\n    - images: [\"registry.example.com/*\"]\n      secrets: [regcred]\n";
    assert!(!caches(&format!("imagePullSecrets:\n{rules}")).secrets);
    assert!(!caches("imagePullSecrets: {watchSecrets: true}\n").secrets);
    assert!(caches(&format!("imagePullSecrets:\n  watchSecrets: true\n{rules}")).secrets);
}
