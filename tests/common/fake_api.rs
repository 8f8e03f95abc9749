//! A test stand-in for kube-apiserver. It is not an API server: it answers only the calls kube's
//! watchers make for the five collections kadmit watches (the Namespace, Pod,
//! GMSACredentialSpec and LimitRange lists and watches, and Secrets as metadata only) and the
//! LocalSubjectAccessReviews kadmit posts, over plain HTTP on a loopback port. A test can hold
//! list responses, push watch events, end watches, answer watches from an expired
//! resourceVersion `410 Gone`, pretend a collection does not exist (as for a CRD not installed)
//! or fail with any HTTP error, and see every request, separately for each collection; it can
//! be started on a port chosen beforehand; and it programs the authorization answers (allowed,
//! denied, an error, a delay or no answer at all) and counts the reviews received.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, Pod, PodSpec, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// Upper bound for anything a test waits on; generous because CI machines are slow.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A request the fake API server received: path, raw query string and `Accept` header.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: String,
    /// The `Accept` header, when sent (and valid UTF-8).
    pub accept: Option<String>,
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
/// returns, whether list responses are held, whether it exists at all, its open watches and the
/// requests it received.
///
/// Get one from [`FakeApiServer::namespaces`], [`FakeApiServer::pods`],
/// [`FakeApiServer::gmsa_specs`], [`FakeApiServer::limit_ranges`] or [`FakeApiServer::secrets`]. Everything here concerns this collection only: holding the
/// pod list does not hold the namespace list, and an event sent to the pod watches never
/// reaches a namespace watch.
pub struct FakeCollection<K> {
    /// The collection path, such as `/api/v1/namespaces`.
    path: &'static str,
    /// The list's `apiVersion` and `kind`, such as `v1` and `NamespaceList`.
    list_type: (&'static str, &'static str),
    /// Serve only objects' metadata, as `PartialObjectMetadata` (see [`METADATA_LIST`]).
    metadata_only: bool,
    /// Answer every request with this HTTP error, such as 404 for a CRD not installed.
    failure: watch::Sender<Option<u16>>,
    /// The items and collection resourceVersion a list request returns.
    list: Mutex<(String, Vec<K>)>,
    /// List responses wait until this is true.
    list_released: watch::Sender<bool>,
    /// Every request for this collection, in order.
    requests: watch::Sender<Vec<Recorded>>,
    /// One sender per open watch connection; each line sent is one watch event.
    watchers: watch::Sender<Vec<mpsc::UnboundedSender<String>>>,
    /// Watches from a resourceVersion older than this (compared as numbers) are told it
    /// expired, this way.
    watch_gone: Mutex<Option<(u64, WatchGone)>>,
}

/// How [`FakeCollection::expire_watches_before`] tells a watch that its resourceVersion is too
/// old (`410 Gone`, reason `Expired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchGone {
    /// An HTTP `410 Gone` response with the `Status`, instead of a watch stream.
    Status,
    /// An HTTP 200 watch stream whose only event is an `ERROR` carrying the `Status`, then the
    /// end of the stream: what kube-apiserver sends.
    Event,
}

impl<K> FakeCollection<K>
where
    K: Serialize + Clone + Send + Sync + 'static,
{
    fn new(
        path: &'static str,
        list_type: (&'static str, &'static str),
        resource_version: &str,
        items: Vec<K>,
        hold_list: bool,
    ) -> Self {
        Self {
            path,
            list_type,
            metadata_only: false,
            failure: watch::channel(None).0,
            list: Mutex::new((resource_version.to_owned(), items)),
            list_released: watch::channel(!hold_list).0,
            requests: watch::channel(Vec::new()).0,
            watchers: watch::channel(Vec::new()).0,
            watch_gone: Mutex::new(None),
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

    /// With `true`, later list and watch requests (and held lists, once released) answer 404
    /// Not Found with the `Status` the API server sends for a resource it does not serve, as
    /// when a CRD is not installed; with `false`, they are answered normally again. Open
    /// watches are not affected (see [`FakeCollection::close_watches`]).
    pub fn set_missing(&self, missing: bool) {
        self.set_failure(missing.then_some(404));
    }

    /// With `Some(code)`, later list and watch requests answer that HTTP error with a `Status`
    /// body (404 is what [`FakeCollection::set_missing`] sets); with `None`, they are answered
    /// normally again.
    pub fn set_failure(&self, code: Option<u16>) {
        self.failure.send_replace(code);
    }

    /// Every request for this collection so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.borrow().clone()
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
    /// this collection, first waiting for one to be open. A metadata-only collection (Secrets)
    /// sends only the object's metadata, as a `PartialObjectMetadata`.
    pub async fn send_event(&self, kind: &str, object: serde_json::Value) {
        let object = if self.metadata_only && kind != "ERROR" {
            partial_object_metadata(object)
        } else {
            object
        };
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

    /// From now on, answers watch requests of this collection from a resourceVersion older
    /// than `oldest` (compared as numbers, as the fake's resourceVersions are) with `410
    /// Gone`, reason `Expired`, sent as `how` says: as the API server does once its history
    /// (after compaction) no longer reaches back that far. Lists and watches from `oldest` or
    /// later are answered as before; open watches are not affected (see
    /// [`FakeCollection::close_watches`]).
    pub fn expire_watches_before(&self, oldest: &str, how: WatchGone) {
        let oldest = oldest.parse().expect("a numeric resourceVersion");
        *self.watch_gone.lock().unwrap() = Some((oldest, how));
    }
}

/// A test stand-in for kube-apiserver that answers only the calls kadmit's live view makes:
///
/// - `GET /api/v1/namespaces`, `GET /api/v1/pods`,
///   `GET /apis/windows.k8s.io/v1/gmsacredentialspecs`, `GET /api/v1/limitranges` and
///   `GET /api/v1/secrets` as lists, and the same paths with `watch=true` as streaming watches
///   whose events the test pushes. Secrets are served as metadata only, and only to clients
///   that ask for it (see [`METADATA_LIST`]);
/// - `POST /apis/authorization.k8s.io/v1/namespaces/<ns>/localsubjectaccessreviews`, answered
///   as [`FakeApiServer::authorizer`] is programmed.
///
/// Plain HTTP on a loopback port; anything else gets a 404. It does no authentication, no
/// validation and no RBAC of its own. It also writes a kubeconfig pointing at itself.
///
/// Each collection is driven separately, through [`FakeApiServer::namespaces`],
/// [`FakeApiServer::pods`], [`FakeApiServer::gmsa_specs`], [`FakeApiServer::limit_ranges`] and
/// [`FakeApiServer::secrets`]. Unless a test says otherwise, all but the namespace list are
/// empty and answered at once, so a test about namespaces need not care about the others, and
/// every review is allowed.
pub struct FakeApiServer {
    namespaces: Arc<FakeCollection<Namespace>>,
    pods: Arc<FakeCollection<Pod>>,
    gmsa_specs: Arc<FakeCollection<serde_json::Value>>,
    limit_ranges: Arc<FakeCollection<LimitRange>>,
    secrets: Arc<FakeCollection<Secret>>,
    authorizer: Arc<FakeAuthorizer>,
    port: u16,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl FakeApiServer {
    /// Serves `namespaces` at collection resourceVersion `resource_version`, and no pods,
    /// GMSACredentialSpecs, LimitRanges or Secrets (at resourceVersion `1`, not held). With
    /// `hold_list`, namespace list responses wait for [`FakeCollection::release_list`].
    ///
    /// To serve other objects, or hold their lists, configure their collection (such as
    /// [`FakeApiServer::pods`]) before starting the client that lists them.
    pub async fn start(
        resource_version: &str,
        namespaces: Vec<Namespace>,
        hold_list: bool,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, resource_version, namespaces, hold_list, |_| {})
    }

    /// [`FakeApiServer::start`] on `listener` (such as a port a kubeconfig written with
    /// [`write_kubeconfig`] already names), with `setup` run on the collections before the
    /// first request is answered: requests that arrive meanwhile wait in the listen queue.
    pub fn start_on(
        listener: tokio::net::TcpListener,
        resource_version: &str,
        namespaces: Vec<Namespace>,
        hold_list: bool,
        setup: impl FnOnce(&Self),
    ) -> Self {
        let namespaces = Arc::new(FakeCollection::new(
            "/api/v1/namespaces",
            ("v1", "NamespaceList"),
            resource_version,
            namespaces,
            hold_list,
        ));
        let pods = Arc::new(FakeCollection::new(
            "/api/v1/pods",
            ("v1", "PodList"),
            "1",
            Vec::new(),
            false,
        ));
        let gmsa_specs = Arc::new(FakeCollection::new(
            "/apis/windows.k8s.io/v1/gmsacredentialspecs",
            ("windows.k8s.io/v1", "GMSACredentialSpecList"),
            "1",
            Vec::new(),
            false,
        ));
        let limit_ranges = Arc::new(FakeCollection::new(
            "/api/v1/limitranges",
            ("v1", "LimitRangeList"),
            "1",
            Vec::new(),
            false,
        ));
        let secrets = Arc::new(FakeCollection {
            metadata_only: true,
            ..FakeCollection::new(
                "/api/v1/secrets",
                ("meta.k8s.io/v1", "PartialObjectMetadataList"),
                "1",
                Vec::new(),
                false,
            )
        });
        let authorizer = Arc::new(FakeAuthorizer::new());
        let app = Router::new()
            .route(
                namespaces.path,
                get(list_or_watch::<Namespace>).with_state(Arc::clone(&namespaces)),
            )
            .route(
                pods.path,
                get(list_or_watch::<Pod>).with_state(Arc::clone(&pods)),
            )
            .route(
                gmsa_specs.path,
                get(list_or_watch::<serde_json::Value>).with_state(Arc::clone(&gmsa_specs)),
            )
            .route(
                limit_ranges.path,
                get(list_or_watch::<LimitRange>).with_state(Arc::clone(&limit_ranges)),
            )
            .route(
                secrets.path,
                get(list_or_watch::<Secret>).with_state(Arc::clone(&secrets)),
            )
            .route(
                "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews",
                post(review_access).with_state(Arc::clone(&authorizer)),
            )
            .fallback(|uri: Uri| async move {
                eprintln!("fake API server: unexpected request {uri}");
                StatusCode::NOT_FOUND
            });
        let port = listener.local_addr().unwrap().port();

        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, port);
        let server = Self {
            namespaces,
            pods,
            gmsa_specs,
            limit_ranges,
            secrets,
            authorizer,
            port,
            _dir: dir,
            kubeconfig,
        };
        setup(&server);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
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

    /// The cluster-scoped GMSACredentialSpec collection,
    /// `/apis/windows.k8s.io/v1/gmsacredentialspecs`, as raw JSON objects (see [`gmsa_spec`]).
    /// [`FakeCollection::set_missing`] makes it behave as if the CRD were not installed.
    pub fn gmsa_specs(&self) -> &FakeCollection<serde_json::Value> {
        &self.gmsa_specs
    }

    /// The LimitRange collection across all namespaces, `/api/v1/limitranges` (see
    /// [`limit_range`]).
    pub fn limit_ranges(&self) -> &FakeCollection<LimitRange> {
        &self.limit_ranges
    }

    /// The Secret collection across all namespaces, `/api/v1/secrets`, served as metadata only:
    /// lists and watches must ask for `PartialObjectMetadata` (see [`METADATA_LIST`]), and the
    /// Secrets given (see [`secret`]) and sent as events lose all but their metadata.
    pub fn secrets(&self) -> &FakeCollection<Secret> {
        &self.secrets
    }

    /// The LocalSubjectAccessReview endpoint: its programmed answer and the reviews received.
    pub fn authorizer(&self) -> &FakeAuthorizer {
        &self.authorizer
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        eprintln!(
            "fake API server on port {} received: namespaces {:#?}, pods {:#?}, \
             gmsacredentialspecs {:#?}, limitranges {:#?}, secrets {:#?}, {} access reviews",
            self.port,
            self.namespaces.requests.borrow(),
            self.pods.requests.borrow(),
            self.gmsa_specs.requests.borrow(),
            self.limit_ranges.requests.borrow(),
            self.secrets.requests.borrow(),
            self.authorizer.calls()
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
pub fn write_kubeconfig(path: &Path, port: u16) {
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

/// The `Accept` media type of a metadata-only list, as kube sends it for
/// `Api<PartialObjectMeta<K>>` lists (and its deprecated `metadata_watcher`).
pub const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

/// The `Accept` media type of metadata-only objects, as kube sends it on watches.
pub const METADATA_OBJECT: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// Whether the `Accept` header `accept` offers `media_type` (one of its comma-separated
/// entries, spaces ignored).
fn accepts(accept: Option<&str>, media_type: &str) -> bool {
    accept.is_some_and(|accept| {
        accept
            .split(',')
            .any(|entry| entry.replace(' ', "") == media_type)
    })
}

/// `object`'s metadata as the API server sends it for metadata-only requests.
fn partial_object_metadata(object: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Answers a list (held while the collection's list is held) or opens a watch.
///
/// A metadata-only collection answers `406 Not Acceptable` unless the request asks for
/// `PartialObjectMetadataList` (list) or `PartialObjectMetadata` (watch). The real API server
/// would send the full objects instead; refusing makes a client that would fetch Secret data
/// fail its test.
async fn list_or_watch<K>(
    State(shared): State<Arc<FakeCollection<K>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response
where
    K: Serialize + Clone + Send + Sync + 'static,
{
    let request = Recorded {
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        accept: headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    let is_watch = request.is_watch();
    let resource_version = request
        .param("resourceVersion")
        .unwrap_or_default()
        .to_owned();
    let wanted = if is_watch {
        METADATA_OBJECT
    } else {
        METADATA_LIST
    };
    let acceptable = !shared.metadata_only || accepts(request.accept.as_deref(), wanted);
    shared.requests.send_modify(|all| all.push(request));

    if let Some(code) = *shared.failure.borrow() {
        return failure(code);
    }
    if !acceptable {
        return failure(406);
    }
    if is_watch {
        let gone = *shared.watch_gone.lock().unwrap();
        if let Some((oldest, how)) = gone
            && resource_version
                .parse::<u64>()
                .is_ok_and(|version| version < oldest)
        {
            return expired(how, &resource_version);
        }
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
    if let Some(code) = *shared.failure.borrow() {
        return failure(code);
    }
    let (resource_version, items) = shared.list.lock().unwrap().clone();
    let mut items: Vec<serde_json::Value> = items
        .iter()
        .map(|item| serde_json::to_value(item).unwrap())
        .collect();
    if shared.metadata_only {
        items = items.into_iter().map(partial_object_metadata).collect();
    }
    let (api_version, kind) = shared.list_type;
    let body = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "resourceVersion": resource_version },
        "items": items,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error response as the API server sends it: HTTP `code` with a `Status` body. For 404,
/// the one it sends for a resource it does not serve (such as a CRD not installed).
fn failure(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    let (reason, message) = match code {
        404 => (
            "NotFound".to_owned(),
            "the server could not find the requested resource".to_owned(),
        ),
        _ => (
            status
                .canonical_reason()
                .unwrap_or("Unknown")
                .replace(' ', ""),
            format!("fake API server: programmed error {code}"),
        ),
    };
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The answer to a watch from `resource_version` when the API server's history no longer
/// reaches back that far: `410 Gone`, reason `Expired`, as `how` says.
fn expired(how: WatchGone, resource_version: &str) -> Response {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {resource_version}"),
        "reason": "Expired",
        "code": 410,
    });
    match how {
        WatchGone::Status => (
            StatusCode::GONE,
            [(header::CONTENT_TYPE, "application/json")],
            status.to_string(),
        )
            .into_response(),
        WatchGone::Event => (
            [(header::CONTENT_TYPE, "application/json")],
            format!("{}\n", json!({ "type": "ERROR", "object": status })),
        )
            .into_response(),
    }
}

/// A LimitRange the way the API server stores it: name, namespace, resourceVersion, managed
/// fields (which kadmit strips) and one `Container` limit whose default CPU limit is
/// `default_cpu`, defaulted as the API server does (`defaultRequest` copied from `default`).
pub fn limit_range(
    namespace: &str,
    name: &str,
    resource_version: &str,
    default_cpu: &str,
) -> LimitRange {
    let cpu =
        || std::collections::BTreeMap::from([("cpu".to_owned(), Quantity(default_cpu.to_owned()))]);
    LimitRange {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            resource_version: Some(resource_version.to_owned()),
            managed_fields: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                    manager: Some("kubectl".to_owned()),
                    operation: Some("Apply".to_owned()),
                    ..Default::default()
                },
            ]),
            ..ObjectMeta::default()
        },
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(cpu()),
                default_request: Some(cpu()),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

/// A Secret with data, as stored: [`FakeApiServer::secrets`] serves only its metadata.
pub fn secret(namespace: &str, name: &str, resource_version: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            resource_version: Some(resource_version.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".to_owned()),
        data: Some(std::collections::BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(br#"{"auths":{}}"#.to_vec()),
        )])),
        ..Secret::default()
    }
}

/// A GMSACredentialSpec the way the API server serves it: `windows.k8s.io/v1`, cluster-scoped,
/// with its data in the top-level `credspec` (not `spec`), and some metadata kadmit strips.
pub fn gmsa_spec(
    name: &str,
    resource_version: &str,
    credspec: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {
            "name": name,
            "resourceVersion": resource_version,
            "uid": format!("uid-{name}"),
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
        },
        "credspec": credspec,
    })
}

/// What the fake answers to a LocalSubjectAccessReview. Build one with [`SarAnswer::allow`],
/// [`SarAnswer::deny`] or [`SarAnswer::error`], then adjust `denied`, `delay` or `hang`.
#[derive(Debug, Clone)]
pub struct SarAnswer {
    /// `status.allowed`.
    pub allowed: bool,
    /// `status.denied` (sent only when true).
    pub denied: bool,
    /// `status.reason` (sent only when not empty).
    pub reason: String,
    /// Instead of a review, fail with this HTTP code and a `Status` body.
    pub error: Option<u16>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Never answer (the request stays open until the client gives up).
    pub hang: bool,
}

impl SarAnswer {
    /// `allowed: true` with `reason`.
    pub fn allow(reason: &str) -> Self {
        Self {
            allowed: true,
            denied: false,
            reason: reason.to_owned(),
            error: None,
            delay: Duration::ZERO,
            hang: false,
        }
    }

    /// `allowed: false` with `reason` (not an explicit `denied`).
    pub fn deny(reason: &str) -> Self {
        Self {
            allowed: false,
            ..Self::allow(reason)
        }
    }

    /// An HTTP error `code` instead of a review.
    pub fn error(code: u16) -> Self {
        Self {
            error: Some(code),
            ..Self::allow("")
        }
    }
}

/// A LocalSubjectAccessReview the fake received.
#[derive(Debug, Clone)]
pub struct ReceivedReview {
    /// The namespace in the request path.
    pub namespace: String,
    /// The review as posted.
    pub body: serde_json::Value,
}

/// The fake's LocalSubjectAccessReview endpoint: a programmed answer, not an authorizer (it
/// evaluates nothing), and a record of every review received.
pub struct FakeAuthorizer {
    answer: Mutex<SarAnswer>,
    /// Every review received, in order, counted as soon as it arrives (before any delay).
    reviews: watch::Sender<Vec<ReceivedReview>>,
}

impl FakeAuthorizer {
    fn new() -> Self {
        Self {
            answer: Mutex::new(SarAnswer::allow("")),
            reviews: watch::channel(Vec::new()).0,
        }
    }

    /// What later reviews are answered with (reviews already waiting keep their answer).
    pub fn set_answer(&self, answer: SarAnswer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// How many reviews have been received.
    pub fn calls(&self) -> usize {
        self.reviews.borrow().len()
    }

    /// Every review received so far, in order.
    pub fn reviews(&self) -> Vec<ReceivedReview> {
        self.reviews.borrow().clone()
    }

    /// Waits until `count` reviews have been received.
    pub async fn wait_for_calls(&self, count: usize) {
        let mut reviews = self.reviews.subscribe();
        tokio::time::timeout(DEADLINE, reviews.wait_for(|all| all.len() >= count))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "fake API server: expected {count} access reviews, got {}",
                    self.calls()
                )
            })
            .unwrap();
    }
}

/// Answers a LocalSubjectAccessReview as programmed: the posted review with a `status`.
async fn review_access(
    State(authorizer): State<Arc<FakeAuthorizer>>,
    UrlPath(namespace): UrlPath<String>,
    body: String,
) -> Response {
    let mut review: serde_json::Value = serde_json::from_str(&body).unwrap();
    authorizer.reviews.send_modify(|all| {
        all.push(ReceivedReview {
            namespace,
            body: review.clone(),
        });
    });
    let answer = authorizer.answer.lock().unwrap().clone();
    tokio::time::sleep(answer.delay).await;
    if answer.hang {
        std::future::pending::<()>().await;
    }
    if let Some(code) = answer.error {
        return failure(code);
    }
    let mut status = json!({ "allowed": answer.allowed });
    if answer.denied {
        status["denied"] = json!(true);
    }
    if !answer.reason.is_empty() {
        status["reason"] = json!(answer.reason);
    }
    review["status"] = status;
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        review.to_string(),
    )
        .into_response()
}
