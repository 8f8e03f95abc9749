//! A test stand-in for kube-apiserver. It is not an API server: it answers only the calls kube's
//! watchers make for the two collections kadmit watches (the Namespace and Pod lists and
//! watches), over plain HTTP on a loopback port, and lets a test hold list responses, push
//! watch events, end watches and see every request, separately for each collection.

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
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// Upper bound for anything a test waits on; generous because CI machines are slow.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A request the fake API server received: path and raw query string.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: String,
}

impl Recorded {
    /// Whether this is a watch (`watch=true`) rather than a list.
    pub fn is_watch(&self) -> bool {
        self.params()
            .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    }

    /// The value of query parameter `name`, as sent (not percent-decoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    }
}

/// One open watch connection, as the fake API server sees it.
pub struct WatchConnection(mpsc::UnboundedSender<String>);

impl WatchConnection {
    /// Whether the client has gone away.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Resolves once the client has gone away.
    pub async fn closed(&self) {
        self.0.closed().await;
    }
}

/// One collection the fake serves (such as all Namespaces), as a test drives it: what its list
/// returns, whether list responses are held, its open watches and the requests it received.
///
/// Get one from [`FakeApiServer::namespaces`] or [`FakeApiServer::pods`]. Everything here
/// concerns this collection only: holding the pod list does not hold the namespace list, and
/// an event sent to the pod watches never reaches a namespace watch.
pub struct FakeCollection<K> {
    /// The collection path, such as `/api/v1/namespaces`.
    path: &'static str,
    /// The items and collection resourceVersion a list request returns.
    list: Mutex<(String, Vec<K>)>,
    /// List responses wait until this is true.
    list_released: watch::Sender<bool>,
    /// Every request for this collection, in order.
    requests: watch::Sender<Vec<Recorded>>,
    /// One sender per open watch connection; each line sent is one watch event.
    watchers: watch::Sender<Vec<mpsc::UnboundedSender<String>>>,
}

impl<K> FakeCollection<K>
where
    K: k8s_openapi::Resource + Serialize + Clone + Send + Sync + 'static,
{
    fn new(path: &'static str, resource_version: &str, items: Vec<K>, hold_list: bool) -> Self {
        Self {
            path,
            list: Mutex::new((resource_version.to_owned(), items)),
            list_released: watch::channel(!hold_list).0,
            requests: watch::channel(Vec::new()).0,
            watchers: watch::channel(Vec::new()).0,
        }
    }

    /// Lets held (and future) list requests be answered.
    pub fn release_list(&self) {
        self.list_released.send_replace(true);
    }

    /// Makes future list requests wait for [`FakeCollection::release_list`].
    pub fn hold_list(&self) {
        self.list_released.send_replace(false);
    }

    /// Replaces what later list requests return.
    pub fn set_list(&self, resource_version: &str, items: Vec<K>) {
        *self.list.lock().unwrap() = (resource_version.to_owned(), items);
    }

    /// Waits until `count` requests matching `pred` have arrived, and returns the last of them.
    pub async fn wait_for_request(
        &self,
        count: usize,
        pred: impl Fn(&Recorded) -> bool,
    ) -> Recorded {
        let mut requests = self.requests.subscribe();
        let seen = tokio::time::timeout(
            DEADLINE,
            requests.wait_for(|all| all.iter().filter(|r| pred(r)).count() >= count),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "fake API server: expected request for {} never came; got {:?}",
                self.path,
                self.requests.borrow()
            )
        })
        .unwrap();
        seen.iter()
            .filter(|r| pred(r))
            .nth(count - 1)
            .unwrap()
            .clone()
    }

    /// The watch connections still open (from the server's side), oldest first.
    pub fn open_watches(&self) -> Vec<WatchConnection> {
        self.watchers
            .borrow()
            .iter()
            .filter(|tx| !tx.is_closed())
            .map(|tx| WatchConnection(tx.clone()))
            .collect()
    }

    /// Sends one watch event (`ADDED`, `MODIFIED`, `DELETED`, `ERROR`) to every open watch of
    /// this collection, first waiting for one to be open.
    pub async fn send_event(&self, kind: &str, object: serde_json::Value) {
        let mut watchers = self.watchers.subscribe();
        tokio::time::timeout(DEADLINE, watchers.wait_for(|w| !w.is_empty()))
            .await
            .unwrap_or_else(|_| panic!("no watch connection opened for {}", self.path))
            .unwrap();
        let line = format!("{}\n", json!({ "type": kind, "object": object }));
        self.watchers.send_modify(|watchers| {
            watchers.retain(|tx| tx.send(line.clone()).is_ok());
        });
    }

    /// Ends every open watch response, as the API server does when a watch times out.
    pub fn close_watches(&self) {
        self.watchers.send_modify(Vec::clear);
    }
}

/// A test stand-in for kube-apiserver that answers only the calls kube's watchers make for
/// Namespaces and Pods: `GET /api/v1/namespaces` and `GET /api/v1/pods` as lists, and the same
/// paths with `watch=true` as streaming watches whose events the test pushes. Plain HTTP on a
/// loopback port; anything else gets a 404. It also writes a kubeconfig pointing at itself.
///
/// Each collection is driven separately, through [`FakeApiServer::namespaces`] and
/// [`FakeApiServer::pods`]. Unless a test says otherwise, the pod list is empty and answered at
/// once, so a test about namespaces need not care about pods.
pub struct FakeApiServer {
    namespaces: Arc<FakeCollection<Namespace>>,
    pods: Arc<FakeCollection<Pod>>,
    port: u16,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl FakeApiServer {
    /// Serves `namespaces` at collection resourceVersion `resource_version`, and no pods (at
    /// resourceVersion `1`, not held). With `hold_list`, namespace list responses wait for
    /// [`FakeCollection::release_list`].
    ///
    /// To serve pods, or hold their list, configure [`FakeApiServer::pods`] before starting
    /// the client that lists them.
    pub async fn start(
        resource_version: &str,
        namespaces: Vec<Namespace>,
        hold_list: bool,
    ) -> Self {
        let namespaces = Arc::new(FakeCollection::new(
            "/api/v1/namespaces",
            resource_version,
            namespaces,
            hold_list,
        ));
        let pods = Arc::new(FakeCollection::new("/api/v1/pods", "1", Vec::new(), false));
        let app = Router::new()
            .route(
                namespaces.path,
                get(list_or_watch::<Namespace>).with_state(Arc::clone(&namespaces)),
            )
            .route(
                pods.path,
                get(list_or_watch::<Pod>).with_state(Arc::clone(&pods)),
            )
            .fallback(|uri: Uri| async move {
                eprintln!("fake API server: unexpected request {uri}");
                StatusCode::NOT_FOUND
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, port);
        Self {
            namespaces,
            pods,
            port,
            _dir: dir,
            kubeconfig,
        }
    }

    /// A kubeconfig file whose current context points at this server, without credentials.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The Namespace collection, `/api/v1/namespaces`.
    pub fn namespaces(&self) -> &FakeCollection<Namespace> {
        &self.namespaces
    }

    /// The Pod collection across all namespaces, `/api/v1/pods`.
    pub fn pods(&self) -> &FakeCollection<Pod> {
        &self.pods
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        eprintln!(
            "fake API server on port {} received: namespaces {:#?}, pods {:#?}",
            self.port,
            self.namespaces.requests.borrow(),
            self.pods.requests.borrow()
        );
    }
}

/// A Namespace the way the fake serves it: name, resourceVersion and labels.
pub fn namespace(name: &str, resource_version: &str, labels: &[(&str, &str)]) -> Namespace {
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

/// Writes a kubeconfig at `path` whose only context points at `http://127.0.0.1:<port>`.
fn write_kubeconfig(path: &Path, port: u16) {
    std::fs::write(
        path,
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
}

/// A Pod the way the fake serves it: name, namespace, resourceVersion, one container.
pub fn pod(namespace: &str, name: &str, resource_version: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            resource_version: Some(resource_version.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".to_owned(),
                image: Some("registry.example/app:1".to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Answers a list (held while the collection's list is held) or opens a watch.
async fn list_or_watch<K>(State(shared): State<Arc<FakeCollection<K>>>, uri: Uri) -> Response
where
    K: k8s_openapi::Resource + Serialize + Clone + Send + Sync + 'static,
{
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

    let mut released = shared.list_released.subscribe();
    if released.wait_for(|released| *released).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (resource_version, items) = shared.list.lock().unwrap().clone();
    let body = json!({
        "apiVersion": "v1",
        "kind": format!("{}List", K::KIND),
        "metadata": { "resourceVersion": resource_version },
        "items": items,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
