//! A test stand-in for kube-apiserver. It is not an API server: it answers only the calls kube's
//! namespace watcher makes (the Namespace list and watch), over plain HTTP on a loopback port,
//! and lets a test hold list responses, push watch events, end watches and see every request.

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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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
/// streaming watch whose events the test pushes. Plain HTTP on a loopback port; anything else
/// gets a 404. It also writes a kubeconfig pointing at itself.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    release_list: watch::Sender<bool>,
    port: u16,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl FakeApiServer {
    /// Serves `namespaces` at collection resourceVersion `resource_version`. With
    /// `hold_list`, list responses wait for [`FakeApiServer::release_list`].
    pub async fn start(
        resource_version: &str,
        namespaces: Vec<Namespace>,
        hold_list: bool,
    ) -> Self {
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
        write_kubeconfig(&kubeconfig, port);
        Self {
            shared,
            release_list,
            port,
            _dir: dir,
            kubeconfig,
        }
    }

    /// A kubeconfig file whose current context points at this server, without credentials.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Lets held (and future) list requests be answered.
    pub fn release_list(&self) {
        self.release_list.send_replace(true);
    }

    /// Makes future list requests wait for [`FakeApiServer::release_list`].
    pub fn hold_list(&self) {
        self.release_list.send_replace(false);
    }

    /// Replaces what later list requests return.
    pub fn set_list(&self, resource_version: &str, namespaces: Vec<Namespace>) {
        *self.shared.list.lock().unwrap() = (resource_version.to_owned(), namespaces);
    }

    /// Waits until `count` requests matching `pred` have arrived, and returns the last of them.
    pub async fn wait_for_request(
        &self,
        count: usize,
        pred: impl Fn(&Recorded) -> bool,
    ) -> Recorded {
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

    /// The watch connections still open (from the server's side), oldest first.
    pub fn open_watches(&self) -> Vec<WatchConnection> {
        self.shared
            .watchers
            .borrow()
            .iter()
            .filter(|tx| !tx.is_closed())
            .map(|tx| WatchConnection(tx.clone()))
            .collect()
    }

    /// Sends one watch event (`ADDED`, `MODIFIED`, `DELETED`, `ERROR`) to every open watch,
    /// first waiting for one to be open.
    pub async fn send_event(&self, kind: &str, object: serde_json::Value) {
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
    pub fn close_watches(&self) {
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
