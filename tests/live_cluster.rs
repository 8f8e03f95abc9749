//! The live cluster view against an in-test fake API server: initial sync, watch events,
//! stripping, and recovery after the API server expires the watch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::{LiveClusterError, client_from_kubeconfig};
use kadmit_core::{ClusterError, ClusterView};
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// Upper bound for anything a test waits on; generous because CI machines are slow.
const DEADLINE: Duration = Duration::from_secs(20);

/// A request the fake API server received: path and raw query string.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    query: String,
}

impl Recorded {
    fn is_watch(&self) -> bool {
        self.params()
            .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    }
}

/// What the fake API server serves, shared by its handlers and the test driving it.
struct Shared {
    /// The namespaces and collection resourceVersion a list request returns.
    list: Mutex<(String, Vec<Namespace>)>,
    /// List responses wait until this is true.
    list_released: watch::Receiver<bool>,
    /// Every request received, in order.
    requests: watch::Sender<Vec<Recorded>>,
    /// One sender per open watch connection; each line sent is one watch event.
    watchers: watch::Sender<Vec<mpsc::UnboundedSender<String>>>,
}

/// A test stand-in for kube-apiserver that answers only the calls kube's namespace watcher
/// makes: `GET /api/v1/namespaces` as a list, and the same path with `watch=true` as a
/// streaming watch whose events the test pushes. Plain HTTP on a loopback port.
struct FakeApiServer {
    shared: Arc<Shared>,
    release_list: watch::Sender<bool>,
    port: u16,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl FakeApiServer {
    /// Serves `namespaces` at collection resourceVersion `resource_version`. With
    /// `hold_list`, list responses wait for [`FakeApiServer::release_list`].
    async fn start(resource_version: &str, namespaces: Vec<Namespace>, hold_list: bool) -> Self {
        let (release_list, list_released) = watch::channel(!hold_list);
        let shared = Arc::new(Shared {
            list: Mutex::new((resource_version.to_owned(), namespaces)),
            list_released,
            requests: watch::channel(Vec::new()).0,
            watchers: watch::channel(Vec::new()).0,
        });
        let app = Router::new()
            .route("/api/v1/namespaces", get(namespaces_handler))
            .fallback(|uri: Uri| async move {
                eprintln!("fake API server: unexpected request {uri}");
                StatusCode::NOT_FOUND
            })
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:{port}
users:
- name: fake
  user: {{}}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
"
            ),
        )
        .unwrap();
        Self {
            shared,
            release_list,
            port,
            _dir: dir,
            kubeconfig,
        }
    }

    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Lets held (and future) list requests be answered.
    fn release_list(&self) {
        self.release_list.send_replace(true);
    }

    /// Makes future list requests wait for [`FakeApiServer::release_list`].
    fn hold_list(&self) {
        self.release_list.send_replace(false);
    }

    /// Replaces what later list requests return.
    fn set_list(&self, resource_version: &str, namespaces: Vec<Namespace>) {
        *self.shared.list.lock().unwrap() = (resource_version.to_owned(), namespaces);
    }

    /// Waits until `count` requests matching `pred` have arrived, and returns the last of them.
    async fn wait_for_request(&self, count: usize, pred: impl Fn(&Recorded) -> bool) -> Recorded {
        let mut requests = self.shared.requests.subscribe();
        let seen = tokio::time::timeout(
            DEADLINE,
            requests.wait_for(|all| all.iter().filter(|r| pred(r)).count() >= count),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "fake API server: expected request never came; got {:?}",
                self.shared.requests.borrow()
            )
        })
        .unwrap();
        seen.iter()
            .filter(|r| pred(r))
            .nth(count - 1)
            .unwrap()
            .clone()
    }

    /// Sends one watch event (`ADDED`, `MODIFIED`, `DELETED`, `ERROR`) to every open watch,
    /// first waiting for one to be open.
    async fn send_event(&self, kind: &str, object: serde_json::Value) {
        let mut watchers = self.shared.watchers.subscribe();
        tokio::time::timeout(DEADLINE, watchers.wait_for(|w| !w.is_empty()))
            .await
            .expect("no watch connection opened")
            .unwrap();
        let line = format!("{}\n", json!({ "type": kind, "object": object }));
        self.shared.watchers.send_modify(|watchers| {
            watchers.retain(|tx| tx.send(line.clone()).is_ok());
        });
    }

    /// Ends every open watch response, as the API server does when a watch times out.
    fn close_watches(&self) {
        self.shared.watchers.send_modify(Vec::clear);
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        eprintln!(
            "fake API server on port {} received: {:#?}",
            self.port,
            self.shared.requests.borrow()
        );
    }
}

async fn namespaces_handler(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let request = Recorded {
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
    };
    let is_watch = request.is_watch();
    shared.requests.send_modify(|all| all.push(request));

    if is_watch {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        shared.watchers.send_modify(|watchers| watchers.push(tx));
        let events = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(events),
        )
            .into_response();
    }

    let mut released = shared.list_released.clone();
    if released.wait_for(|released| *released).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (resource_version, items) = shared.list.lock().unwrap().clone();
    let body = json!({
        "apiVersion": "v1",
        "kind": "NamespaceList",
        "metadata": { "resourceVersion": resource_version },
        "items": items,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn namespace(name: &str, resource_version: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version: Some(resource_version.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

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
    let watch = server.shared.watchers.borrow()[0].clone();

    drop(view);
    assert!(clone.is_synced(), "a remaining clone keeps the cache alive");
    assert!(!watch.is_closed());

    drop(clone);
    tokio::time::timeout(DEADLINE, watch.closed())
        .await
        .expect("the watch connection stayed open after the view was dropped");
}
