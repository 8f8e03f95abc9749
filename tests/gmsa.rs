//! GMSA (`../shared/spec/gmsa.md` §2, §3, §5) through the real HTTPS server and a real client.
//!
//! - Upstream's unit cases (webhook_test.go, webhook_http_test.go) with its dummy fixtures, built
//!   inline, against an in-test cluster view ([`FakeCluster`]) that authorizes everything unless
//!   told otherwise and records every question it is asked.
//! - Upstream's integration cases, from the manifests in `../shared/conformance/gmsa/`, against
//!   three cluster views: the in-test one, an offline `Snapshot` of the same manifests (its RBAC
//!   evaluated), and `LiveCluster` watching the in-test fake API server.
//! - Live only: warm caches answer without the API server; a hanging SubjectAccessReview is
//!   answered before the request's deadline, per `failure.onError`.
//! - Pods without GMSA (Linux or Windows) and non-Pod kinds pass untouched.
//!
//! Every mutation's patch is decoded and compared op by op, then applied; the patched pod is
//! sent to /mutate again (which must not patch it a second time) and to /validate, as the API
//! server would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::fake_api::{self, FakeApiServer, SarAnswer};
use common::{TestOptions, TestServer, post_json};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kadmit::core::cluster::{
    AccessDecision, AccessRequest, ClusterError, GmsaCredentialSpec, Snapshot,
};
use kadmit::core::config::OnError;
use kadmit::core::{ClusterView, Config};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Upstream's unit-test fixtures

const NS: &str = "dummy-namespace";
const SA: &str = "dummy-service-account-name";
const POD: &str = "dummy-pod-name";
const CONTAINER: &str = "dummy-container-name";
const CREDSPEC: &str = "dummy-cred-spec-name";

/// The dummy spec's `credspec` as stored: two keys, deliberately not in sorted order.
const DUMMY_CREDSPEC: &str = r#"{"CmsPlugins": ["ActiveDirectory"], "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Scope": "CONTOSO", "Name": "WebApp"}, {"Scope": "contoso.com", "Name": "WebApp"}]}}"#;
/// [`DUMMY_CREDSPEC`] as upstream inlines it: compact, keys sorted at every level.
const DUMMY_CONTENTS: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"WebApp","Scope":"CONTOSO"},{"Name":"WebApp","Scope":"contoso.com"}]},"CmsPlugins":["ActiveDirectory"]}"#;
/// The same JSON as [`DUMMY_CONTENTS`], keys reordered and with whitespace.
const DUMMY_REORDERED: &str = "{ \"CmsPlugins\" : [ \"ActiveDirectory\" ],\n  \"ActiveDirectoryConfig\": {\"GroupManagedServiceAccounts\": [{\"Scope\": \"CONTOSO\", \"Name\": \"WebApp\"}, {\"Name\": \"WebApp\", \"Scope\": \"contoso.com\"}]} }";
/// Different JSON: another account.
const OTHER_CONTENTS: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"OtherApp","Scope":"CONTOSO"},{"Name":"OtherApp","Scope":"contoso.com"}]},"CmsPlugins":["ActiveDirectory"]}"#;
/// [`DUMMY_CONTENTS`] with the array in the other order: arrays are ordered, so it differs.
const SWAPPED_ARRAY: &str = r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"WebApp","Scope":"contoso.com"},{"Name":"WebApp","Scope":"CONTOSO"}]},"CmsPlugins":["ActiveDirectory"]}"#;

const PAUSE: &str = "registry.k8s.io/pause";

fn extra_container(i: usize) -> String {
    format!("extra-container-{i}")
}

fn extra_credspec_name(i: usize) -> String {
    format!("extra-container-{i}-cred-spec")
}

fn extra_credspec(i: usize) -> String {
    format!(
        r#"{{"DomainJoinConfig": {{"NetBiosName": "EXTRA", "MachineAccountName": "extra{i}"}}, "CmsPlugins": ["ActiveDirectory"]}}"#
    )
}

fn extra_contents(i: usize) -> String {
    format!(
        r#"{{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{{"MachineAccountName":"extra{i}","NetBiosName":"EXTRA"}}}}"#
    )
}

/// What upstream inlines for the specs [`FakeCluster::dummy`] holds.
fn contents_of(name: &str) -> String {
    if name == CREDSPEC {
        return DUMMY_CONTENTS.to_owned();
    }
    (0..6)
        .find(|i| extra_credspec_name(*i) == name)
        .map(extra_contents)
        .unwrap_or_else(|| panic!("no contents known for {name}"))
}

/// The question the GMSA webhook asks for `sa` in `namespace`, spelled out field by field.
fn use_question(namespace: &str, sa: &str, credspec: &str) -> AccessRequest {
    AccessRequest {
        user: format!("system:serviceaccount:{namespace}:{sa}"),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
        ],
        namespace: namespace.to_owned(),
        verb: "use".to_owned(),
        group: "windows.k8s.io".to_owned(),
        version: "v1".to_owned(),
        resource: "gmsacredentialspecs".to_owned(),
        name: credspec.to_owned(),
    }
}

fn allowed() -> AccessDecision {
    AccessDecision {
        allowed: true,
        reason: String::new(),
    }
}

fn denied(reason: &str) -> AccessDecision {
    AccessDecision {
        allowed: false,
        reason: reason.to_owned(),
    }
}

fn not_authorized(sa: &str, credspec: &str, reason: &str) -> String {
    let mut message = format!(
        "service account \"{sa}\" is not authorized to `use` GMSA cred spec \"{credspec}\""
    );
    if !reason.is_empty() {
        message.push_str(&format!(", reason: \"{reason}\""));
    }
    message
}

fn mismatch(kind: &str, name: &str, credspec: &str) -> String {
    format!(
        "the GMSA cred spec contents for {kind} \"{name}\" does not match the contents of GMSA resource \"{credspec}\""
    )
}

fn without_name(kind: &str, name: &str) -> String {
    format!(
        "{kind} \"{name}\" has a GMSA cred spec set, but does not define the name of the corresponding resource"
    )
}

fn immutable(what: &str, kind: &str, name: &str) -> String {
    format!(
        "cannot update an existing pod's GMSA settings (GMSA {what} modified on {kind} \"{name}\")"
    )
}

// ---------------------------------------------------------------------------------------------
// The in-test cluster view

type Authorizer = Arc<dyn Fn(&AccessRequest) -> Result<AccessDecision, ClusterError> + Send + Sync>;

/// A cluster view like upstream's fake client: specs from a map, and an authorizer that allows
/// everything unless replaced. Records every spec lookup and every authorization question.
struct FakeCluster {
    specs: Mutex<BTreeMap<String, Result<Option<Value>, ClusterError>>>,
    authorizer: Mutex<Authorizer>,
    asked: Mutex<Vec<AccessRequest>>,
    looked_up: Mutex<Vec<String>>,
}

impl FakeCluster {
    fn empty() -> Arc<FakeCluster> {
        Arc::new(FakeCluster {
            specs: Mutex::new(BTreeMap::new()),
            authorizer: Mutex::new(Arc::new(|_| Ok(allowed()))),
            asked: Mutex::new(Vec::new()),
            looked_up: Mutex::new(Vec::new()),
        })
    }

    /// The dummy spec and `extra-container-<i>-cred-spec` for i in 0..6.
    fn dummy() -> Arc<FakeCluster> {
        let cluster = FakeCluster::empty();
        cluster.set_spec(CREDSPEC, Some(DUMMY_CREDSPEC));
        for i in 0..6 {
            cluster.set_spec(&extra_credspec_name(i), Some(&extra_credspec(i)));
        }
        cluster
    }

    /// Stores a spec whose `credspec` is the JSON `credspec`, or that has none.
    fn set_spec(&self, name: &str, credspec: Option<&str>) {
        let value = credspec.map(|text| serde_json::from_str(text).unwrap());
        self.set_spec_value(name, value);
    }

    fn set_spec_value(&self, name: &str, credspec: Option<Value>) {
        self.specs
            .lock()
            .unwrap()
            .insert(name.to_owned(), Ok(credspec));
    }

    fn set_spec_error(&self, name: &str, message: &str) {
        self.specs.lock().unwrap().insert(
            name.to_owned(),
            Err(ClusterError::Unavailable(message.to_owned())),
        );
    }

    fn remove_spec(&self, name: &str) {
        self.specs.lock().unwrap().remove(name);
    }

    fn set_authorizer(
        &self,
        authorizer: impl Fn(&AccessRequest) -> Result<AccessDecision, ClusterError>
        + Send
        + Sync
        + 'static,
    ) {
        *self.authorizer.lock().unwrap() = Arc::new(authorizer);
    }

    /// Denies `use` of `credspec` (everything else stays allowed).
    fn deny_spec(&self, credspec: &str, reason: &str) {
        let credspec = credspec.to_owned();
        let reason = reason.to_owned();
        self.set_authorizer(move |request| {
            Ok(if request.name == credspec {
                denied(&reason)
            } else {
                allowed()
            })
        });
    }

    fn asked(&self) -> Vec<AccessRequest> {
        self.asked.lock().unwrap().clone()
    }

    fn looked_up(&self) -> Vec<String> {
        self.looked_up.lock().unwrap().clone()
    }

    fn forget_calls(&self) {
        self.asked.lock().unwrap().clear();
        self.looked_up.lock().unwrap().clear();
    }

    #[track_caller]
    fn assert_untouched(&self) {
        assert_eq!(
            self.asked(),
            Vec::<AccessRequest>::new(),
            "authorizer asked"
        );
        assert_eq!(self.looked_up(), Vec::<String>::new(), "specs looked up");
    }
}

impl ClusterView for FakeCluster {
    fn namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, ClusterError> {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.to_owned());
        Ok(Some(Arc::new(namespace)))
    }

    fn pods(&self, _namespace: &str) -> Result<Vec<Arc<Pod>>, ClusterError> {
        Ok(Vec::new())
    }

    fn gmsa_credential_spec(
        &self,
        name: &str,
    ) -> Result<Option<Arc<GmsaCredentialSpec>>, ClusterError> {
        self.looked_up.lock().unwrap().push(name.to_owned());
        match self.specs.lock().unwrap().get(name) {
            None => Ok(None),
            Some(Ok(credspec)) => Ok(Some(Arc::new(GmsaCredentialSpec {
                name: name.to_owned(),
                credspec: credspec.clone(),
            }))),
            Some(Err(err)) => Err(err.clone()),
        }
    }

    fn authorize(
        &self,
        request: &AccessRequest,
        _deadline: Option<Instant>,
    ) -> Result<AccessDecision, ClusterError> {
        self.asked.lock().unwrap().push(request.clone());
        let authorizer = Arc::clone(&self.authorizer.lock().unwrap());
        authorizer(request)
    }
}

/// A gate an authorizer waits on (at most 30 s), released by the test once it has its answer,
/// so no thread is left blocked when the test ends.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (lock, cvar) = &*self.0;
        let guard = lock.lock().unwrap();
        let _ = cvar
            .wait_timeout_while(guard, Duration::from_secs(30), |open| !*open)
            .unwrap();
    }

    fn open(&self) {
        let (lock, cvar) = &*self.0;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// The server, requests and answers

/// GMSA alone (Pod Security off, so that only GMSA speaks).
fn gmsa_config(random_hostname: bool, on_error: OnError) -> Config {
    let mut config = Config::default();
    config.pod_security.enabled = false;
    config.gmsa.enabled = true;
    config.gmsa.random_hostname = random_hostname;
    config.failure.on_error = on_error;
    config
}

struct Hook {
    server: TestServer,
    client: reqwest::Client,
    uids: AtomicUsize,
}

impl Hook {
    async fn start(cluster: Arc<dyn ClusterView>, random_hostname: bool) -> Hook {
        Hook::start_with(cluster, gmsa_config(random_hostname, OnError::Deny)).await
    }

    async fn start_with(cluster: Arc<dyn ClusterView>, config: Config) -> Hook {
        let server = TestServer::start(TestOptions {
            config,
            cluster,
            ..TestOptions::default()
        })
        .await;
        let client = server.client();
        Hook {
            server,
            client,
            uids: AtomicUsize::new(0),
        }
    }

    /// Posts `request` (without uid) in a v1 AdmissionReview to `path` (with any query).
    async fn send(&self, path: &str, request: &Value) -> Answer {
        self.send_version(path, request, "admission.k8s.io/v1")
            .await
    }

    async fn send_version(&self, path: &str, request: &Value, version: &str) -> Answer {
        let uid = format!(
            "6f1c2a9e-0000-4000-8000-{:012}",
            self.uids.fetch_add(1, Ordering::SeqCst)
        );
        let mut request = request.clone();
        request["uid"] = json!(uid);
        let review = json!({"apiVersion": version, "kind": "AdmissionReview", "request": request});
        let (status, body) = post_json(&self.client, &self.server.url(path), &review).await;
        assert_eq!(status, 200, "{path}: {body}");
        Answer::parse(body, &uid, version)
    }

    async fn mutate(&self, request: &Value) -> Answer {
        self.send("/mutate", request).await
    }

    async fn validate(&self, request: &Value) -> Answer {
        self.send("/validate", request).await
    }

    /// What the API server does with a new pod: /mutate, apply the patch, and /validate the
    /// result. Checks on the way that /mutate allowed it and that a second /mutate pass over the
    /// patched pod changes nothing.
    async fn admit(&self, namespace: &str, pod: &Value) -> Admitted {
        let mutate = self.mutate(&create(namespace, pod)).await;
        assert!(mutate.allowed(), "/mutate denied: {}", mutate.body);
        let patched = apply(pod, &mutate.ops);
        let again = self.mutate(&create(namespace, &patched)).await;
        assert!(
            again.allowed(),
            "second /mutate pass denied: {}",
            again.body
        );
        assert_eq!(
            again.ops,
            Vec::<Value>::new(),
            "second /mutate pass patched again"
        );
        let validate = self.validate(&create(namespace, &patched)).await;
        Admitted {
            mutate,
            pod: patched,
            validate,
        }
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

struct Admitted {
    mutate: Answer,
    /// The pod with the mutation applied.
    pod: Value,
    validate: Answer,
}

/// An AdmissionReview answer, with its patch decoded.
#[derive(Debug)]
struct Answer {
    body: Value,
    /// The JSON Patch ops; empty when the answer has no patch.
    ops: Vec<Value>,
    /// The decoded patch document, byte for byte.
    patch_text: Option<String>,
}

impl Answer {
    #[track_caller]
    fn parse(body: Value, uid: &str, version: &str) -> Answer {
        assert_eq!(body["apiVersion"], version, "{body}");
        assert_eq!(body["kind"], "AdmissionReview", "{body}");
        let response = &body["response"];
        assert_eq!(response["uid"], uid, "uid not echoed: {body}");
        assert!(response["allowed"].is_boolean(), "{body}");
        let (ops, patch_text) = match response.get("patch") {
            None => {
                assert!(
                    response.get("patchType").is_none(),
                    "patchType without patch: {body}"
                );
                (Vec::new(), None)
            }
            Some(patch) => {
                assert_eq!(response["patchType"], "JSONPatch", "{body}");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(patch.as_str().expect("patch is a base64 string"))
                    .unwrap();
                let text = String::from_utf8(bytes).unwrap();
                let ops: Vec<Value> = serde_json::from_str(&text).unwrap();
                assert!(!ops.is_empty(), "an empty patch must be left out: {body}");
                (ops, Some(text))
            }
        };
        Answer {
            body,
            ops,
            patch_text,
        }
    }

    fn allowed(&self) -> bool {
        self.body["response"]["allowed"] == true
    }

    fn code(&self) -> Option<u64> {
        self.body["response"]["status"]["code"].as_u64()
    }

    fn message(&self) -> &str {
        self.body["response"]["status"]["message"]
            .as_str()
            .unwrap_or("")
    }

    fn warnings(&self) -> Vec<String> {
        self.body["response"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    }

    /// Allowed, without patch or warnings.
    #[track_caller]
    fn assert_untouched(&self) {
        assert!(self.allowed(), "{}", self.body);
        assert_eq!(self.ops, Vec::<Value>::new(), "{}", self.body);
        assert_eq!(self.warnings(), Vec::<String>::new(), "{}", self.body);
    }

    /// Allowed with exactly these patch ops.
    #[track_caller]
    fn assert_patched(&self, ops: &[Value]) {
        assert!(self.allowed(), "{}", self.body);
        assert_eq!(self.ops, ops, "{}", self.body);
    }

    /// Denied with `code` and exactly `message`, and nothing patched.
    #[track_caller]
    fn assert_denied(&self, code: u64, message: &str) {
        assert!(!self.allowed(), "{}", self.body);
        assert_eq!(self.code(), Some(code), "{}", self.body);
        assert_eq!(self.message(), message, "{}", self.body);
        assert_eq!(self.ops, Vec::<Value>::new(), "{}", self.body);
    }

    /// Denied with `code` and a message starting with `prefix`.
    #[track_caller]
    fn assert_denied_starting(&self, code: u64, prefix: &str) {
        assert!(!self.allowed(), "{}", self.body);
        assert_eq!(self.code(), Some(code), "{}", self.body);
        assert!(
            self.message().starts_with(prefix),
            "expected a message starting with {prefix:?}: {}",
            self.body
        );
        assert_eq!(self.ops, Vec::<Value>::new(), "{}", self.body);
    }
}

const POD_KIND: &str = r#"{"group": "", "version": "v1", "kind": "Pod"}"#;
const PODS: &str = r#"{"group": "", "version": "v1", "resource": "pods"}"#;

/// A pod CREATE request (the API server's: the ReplicaSet controller creating it).
fn create(namespace: &str, pod: &Value) -> Value {
    let mut request = json!({
        "kind": serde_json::from_str::<Value>(POD_KIND).unwrap(),
        "resource": serde_json::from_str::<Value>(PODS).unwrap(),
        "requestKind": serde_json::from_str::<Value>(POD_KIND).unwrap(),
        "requestResource": serde_json::from_str::<Value>(PODS).unwrap(),
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {
            "username": "system:serviceaccount:kube-system:replicaset-controller",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
        },
        "object": pod,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
    });
    if let Some(name) = pod["metadata"]["name"].as_str() {
        request["name"] = json!(name);
    }
    request
}

/// A pod UPDATE request (`kubectl apply` by a user), or one of `sub_resource`.
fn update(namespace: &str, old: &Value, new: &Value, sub_resource: Option<&str>) -> Value {
    let mut request = json!({
        "kind": serde_json::from_str::<Value>(POD_KIND).unwrap(),
        "resource": serde_json::from_str::<Value>(PODS).unwrap(),
        "namespace": namespace,
        "name": new["metadata"]["name"],
        "operation": "UPDATE",
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": new,
        "oldObject": old,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
    });
    if let Some(sub_resource) = sub_resource {
        request["subResource"] = json!(sub_resource);
    }
    request
}

/// `pod` with the JSON Patch `ops` applied.
#[track_caller]
fn apply(pod: &Value, ops: &[Value]) -> Value {
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec())).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

fn add(path: &str, value: &str) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

const POD_LEVEL: &str = "/spec/securityContext/windowsOptions/gmsaCredentialSpec";

fn container_path(list: &str, index: usize) -> String {
    format!("/spec/{list}/{index}/securityContext/windowsOptions/gmsaCredentialSpec")
}

/// Checks `op` adds a random hostname as upstream makes them (the first 15 characters of a
/// lowercase UUIDv4) and returns it.
#[track_caller]
fn random_hostname(op: &Value) -> String {
    assert_eq!(op["op"], "add", "{op}");
    assert_eq!(op["path"], "/spec/hostname", "{op}");
    let hostname = op["value"].as_str().expect("hostname is a string");
    assert_eq!(hostname.len(), 15, "{hostname}");
    for (i, c) in hostname.chars().enumerate() {
        match i {
            8 | 13 => assert_eq!(c, '-', "{hostname}"),
            14 => assert_eq!(c, '4', "UUID version digit: {hostname}"),
            _ => assert!(c.is_ascii_digit() || ('a'..='f').contains(&c), "{hostname}"),
        }
    }
    hostname.to_owned()
}

// ---------------------------------------------------------------------------------------------
// Pods built inline

fn pod_with(spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NS},
        "spec": spec
    })
}

/// A `windowsOptions` object with the given name and contents.
fn options(name: Option<&str>, contents: Option<&str>) -> Value {
    let mut options = json!({});
    if let Some(name) = name {
        options["gmsaCredentialSpecName"] = json!(name);
    }
    if let Some(contents) = contents {
        options["gmsaCredentialSpec"] = json!(contents);
    }
    options
}

fn container(name: &str, windows_options: Option<Value>) -> Value {
    let mut container = json!({"name": name, "image": PAUSE});
    if let Some(options) = windows_options {
        container["securityContext"] = json!({"windowsOptions": options});
    }
    container
}

/// Where the entry under test sits: upstream's matrix runs pod level and container level;
/// kadmit also covers init containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Pod,
    Container,
    InitContainer,
}

impl Target {
    const ALL: [Target; 3] = [Target::Pod, Target::Container, Target::InitContainer];

    /// `pod` or `container`, as messages say.
    fn kind(self) -> &'static str {
        match self {
            Target::Pod => "pod",
            Target::Container | Target::InitContainer => "container",
        }
    }

    /// The pod's or the container's name, as messages say.
    fn name(self) -> &'static str {
        match self {
            Target::Pod => POD,
            Target::Container | Target::InitContainer => CONTAINER,
        }
    }
}

/// Shuffles `items` deterministically from `seed`, as upstream shuffles its containers.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from(state >> 33).unwrap() % (i + 1);
        items.swap(i, j);
    }
}

/// Upstream's matrix pod: `windows_options` on `target`, plus `extras` containers
/// `extra-container-<i>` naming `extra-container-<i>-cred-spec` (with its correct contents
/// when `extras_preset`), all containers in a shuffled order.
fn matrix_pod(target: Target, windows_options: Value, extras: usize, extras_preset: bool) -> Value {
    let mut containers: Vec<Value> = (0..extras)
        .map(|i| {
            let contents = extras_preset.then(|| extra_contents(i));
            container(
                &extra_container(i),
                Some(options(Some(&extra_credspec_name(i)), contents.as_deref())),
            )
        })
        .collect();
    let mut spec = json!({"serviceAccountName": SA});
    match target {
        Target::Pod => {
            spec["securityContext"] = json!({"windowsOptions": windows_options});
            containers.push(container(CONTAINER, None));
        }
        Target::Container => containers.push(container(CONTAINER, Some(windows_options))),
        Target::InitContainer => {
            spec["initContainers"] = json!([container(CONTAINER, Some(windows_options))]);
            containers.push(container("app", None));
        }
    }
    shuffle(&mut containers, extras as u64 * 31 + target as u64);
    spec["containers"] = Value::Array(containers);
    pod_with(spec)
}

/// The `windowsOptions` of `target` in a pod built by [`matrix_pod`].
fn target_options(pod: &mut Value, target: Target) -> &mut Value {
    let spec = &mut pod["spec"];
    match target {
        Target::Pod => &mut spec["securityContext"]["windowsOptions"],
        Target::Container => spec["containers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["name"] == CONTAINER)
            .map(|c| &mut c["securityContext"]["windowsOptions"])
            .unwrap(),
        Target::InitContainer => {
            &mut spec["initContainers"][0]["securityContext"]["windowsOptions"]
        }
    }
}

/// The ops upstream's order gives for `pod`: an `add` of the contents for every entry that
/// names a spec and has no contents — pod level, then containers, init containers and
/// ephemeral containers, each by index.
fn expected_ops(pod: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    let mut visit = |path: String, options: &Value| {
        if let Some(name) = options["gmsaCredentialSpecName"].as_str()
            && options.get("gmsaCredentialSpec").is_none()
        {
            ops.push(add(&path, &contents_of(name)));
        }
    };
    if let Some(options) = pod.pointer("/spec/securityContext/windowsOptions") {
        visit(POD_LEVEL.to_owned(), options);
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for (i, c) in pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(options) = c.pointer("/securityContext/windowsOptions") {
                visit(container_path(list, i), options);
            }
        }
    }
    ops
}

// ---------------------------------------------------------------------------------------------
// Pods without GMSA, and objects that are not pods

/// Pods that must pass both endpoints untouched, without a spec lookup or an authorization.
fn pods_without_gmsa() -> Vec<(&'static str, Value)> {
    vec![
        (
            "no windowsOptions",
            pod_with(json!({"containers": [container(CONTAINER, None)]})),
        ),
        (
            "empty windowsOptions everywhere",
            pod_with(json!({
                "securityContext": {"windowsOptions": {}},
                "initContainers": [container("init", Some(json!({})))],
                "containers": [container(CONTAINER, Some(json!({}))), container("other", Some(json!({})))]
            })),
        ),
        (
            "linux pod",
            pod_with(json!({
                "os": {"name": "linux"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "nginx", "image": "nginx", "securityContext": {"allowPrivilegeEscalation": false}}]
            })),
        ),
        (
            "windows pod with other windowsOptions",
            pod_with(json!({
                "os": {"name": "windows"},
                "nodeSelector": {"kubernetes.io/os": "windows"},
                "securityContext": {"windowsOptions": {"runAsUserName": "ContainerUser"}},
                "containers": [
                    {"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis",
                     "securityContext": {"windowsOptions": {"runAsUserName": "ContainerAdministrator"}}}
                ]
            })),
        ),
        (
            "windows hostProcess pod",
            pod_with(json!({
                "os": {"name": "windows"},
                "hostNetwork": true,
                "securityContext": {"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}},
                "containers": [container("agent", Some(json!({"hostProcess": true})))]
            })),
        ),
    ]
}

#[tokio::test]
async fn pods_without_gmsa_are_allowed_untouched() {
    for random_hostname in [false, true] {
        let cluster = FakeCluster::dummy();
        let hook = Hook::start(cluster.clone(), random_hostname).await;
        for (what, pod) in pods_without_gmsa() {
            let request = create(NS, &pod);
            let mutate = hook.mutate(&request).await;
            assert!(mutate.allowed(), "{what}: {}", mutate.body);
            assert_eq!(
                mutate.ops,
                Vec::<Value>::new(),
                "{what} (random hostname {random_hostname})"
            );
            mutate.assert_untouched();
            hook.validate(&request).await.assert_untouched();
            // Updates of such pods too.
            let mut changed = pod.clone();
            changed["metadata"]["labels"] = json!({"changed": "yes"});
            hook.mutate(&update(NS, &pod, &changed, None))
                .await
                .assert_untouched();
            hook.validate(&update(NS, &pod, &changed, None))
                .await
                .assert_untouched();
        }
        cluster.assert_untouched();
        hook.stop().await;
    }
}

/// kadmit difference: objects other than Pods are not GMSA's business (upstream answers 400
/// `expected a Pod object, got a <Kind>`).
#[tokio::test]
async fn objects_other_than_pods_are_ignored() {
    let cluster = FakeCluster::dummy();
    cluster.deny_spec(CREDSPEC, "nobody may");
    let hook = Hook::start(cluster.clone(), true).await;
    let template_spec = json!({
        "serviceAccountName": SA,
        "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": CREDSPEC}},
        "containers": [container(CONTAINER, Some(options(None, Some(OTHER_CONTENTS))))]
    });
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": template_spec}
        }
    });
    let request = json!({
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "namespace": NS,
        "name": "web",
        "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": deployment
    });
    hook.mutate(&request).await.assert_untouched();
    hook.validate(&request).await.assert_untouched();
    cluster.assert_untouched();
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// /validate on CREATE (upstream TestValidateCreateRequest)

#[tokio::test]
async fn validate_create_matrix_contents_against_the_spec() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    for target in Target::ALL {
        for extras in 0..=5 {
            let case = |name: Option<&str>, contents: Option<&str>| {
                matrix_pod(target, options(name, contents), extras, true)
            };
            let at = format!("{target:?} with {extras} extra containers");

            // (1) name + the contents as upstream writes them.
            let answer = hook
                .validate(&create(NS, &case(Some(CREDSPEC), Some(DUMMY_CONTENTS))))
                .await;
            assert!(answer.allowed(), "{at}: {}", answer.body);
            answer.assert_untouched();
            // The target's and every extra container's service account use was checked.
            let mut asked: Vec<String> = cluster.asked().into_iter().map(|q| q.name).collect();
            asked.sort();
            let mut expected: Vec<String> = (0..extras).map(extra_credspec_name).collect();
            expected.push(CREDSPEC.to_owned());
            expected.sort();
            assert_eq!(asked, expected, "{at}");
            cluster.forget_calls();

            // (2) the same JSON, keys reordered and with whitespace.
            hook.validate(&create(NS, &case(Some(CREDSPEC), Some(DUMMY_REORDERED))))
                .await
                .assert_untouched();

            // (3) different JSON, and the same objects in another array order.
            for other in [OTHER_CONTENTS, SWAPPED_ARRAY, "{}"] {
                let answer = hook
                    .validate(&create(NS, &case(Some(CREDSPEC), Some(other))))
                    .await;
                answer.assert_denied(422, &mismatch(target.kind(), target.name(), CREDSPEC));
            }

            // (4) not JSON, or JSON that is not an object.
            for not_an_object in [
                "i am not JSON",
                "[\"ActiveDirectory\"]",
                "\"a string\"",
                "{",
            ] {
                let answer = hook
                    .validate(&create(NS, &case(Some(CREDSPEC), Some(not_an_object))))
                    .await;
                answer.assert_denied_starting(
                    422,
                    &format!(
                        "{}: unable to parse \"{not_an_object}\" as a JSON object: ",
                        mismatch(target.kind(), target.name(), CREDSPEC)
                    ),
                );
            }

            // (5) contents without a name.
            let answer = hook
                .validate(&create(NS, &case(None, Some(DUMMY_CONTENTS))))
                .await;
            answer.assert_denied(422, &without_name(target.kind(), target.name()));
            cluster.forget_calls();
        }
    }
    hook.stop().await;
}

#[tokio::test]
async fn validate_create_matrix_unauthorized_service_account() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    for target in Target::ALL {
        for extras in 0..=5 {
            for (contents, reason) in [
                (None, "dummy reason"),
                (Some(DUMMY_CONTENTS), "dummy reason"),
                (None, ""),
            ] {
                cluster.deny_spec(CREDSPEC, reason);
                cluster.forget_calls();
                let mut pod = matrix_pod(target, options(Some(CREDSPEC), contents), extras, true);
                // The request's namespace is what counts, not the object's.
                pod["metadata"]["namespace"] = json!("somewhere-else");
                let answer = hook.validate(&create(NS, &pod)).await;
                answer.assert_denied(403, &not_authorized(SA, CREDSPEC, reason));
                // The pod's service account was asked about, in the request namespace.
                let asked = cluster.asked();
                assert!(
                    asked.contains(&use_question(NS, SA, CREDSPEC)),
                    "{target:?}/{extras}: {asked:#?}"
                );
                assert!(
                    asked
                        .iter()
                        .all(|q| q.user == format!("system:serviceaccount:{NS}:{SA}")
                            && q.namespace == NS),
                    "{asked:#?}"
                );
                // Authorization comes first: the contents were not compared (no lookup).
                assert_eq!(
                    cluster
                        .looked_up()
                        .iter()
                        .filter(|n| *n == CREDSPEC)
                        .count(),
                    0,
                    "{target:?}/{extras}"
                );
            }
        }
    }
    hook.stop().await;
}

#[tokio::test]
async fn validate_create_matrix_spec_retrieval_errors() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    for target in Target::ALL {
        for extras in 0..=5 {
            let pod = matrix_pod(
                target,
                options(Some(CREDSPEC), Some(DUMMY_CONTENTS)),
                extras,
                true,
            );
            cluster.remove_spec(CREDSPEC);
            hook.validate(&create(NS, &pod))
                .await
                .assert_denied(404, &format!("cred spec {CREDSPEC} does not exist"));
            cluster.set_spec_error(CREDSPEC, "dummy error");
            hook.validate(&create(NS, &pod)).await.assert_denied(
                500,
                &format!("unable to retrieve the contents of cred spec {CREDSPEC}: dummy error"),
            );
            cluster.set_spec(CREDSPEC, None);
            hook.validate(&create(NS, &pod)).await.assert_denied(
                417,
                &format!("cred spec {CREDSPEC} does not have a credspec key"),
            );
            cluster.set_spec(CREDSPEC, Some(DUMMY_CREDSPEC));
            hook.validate(&create(NS, &pod)).await.assert_untouched();
        }
    }
    hook.stop().await;
}

/// Without contents, /validate checks authorization only: the spec is not fetched, so its
/// existence is not checked again.
#[tokio::test]
async fn validate_create_without_contents_does_not_look_the_spec_up() {
    let cluster = FakeCluster::empty();
    let hook = Hook::start(cluster.clone(), false).await;
    for target in Target::ALL {
        let pod = matrix_pod(target, options(Some("not-there"), None), 0, false);
        hook.validate(&create(NS, &pod)).await.assert_untouched();
        assert_eq!(cluster.asked(), vec![use_question(NS, SA, "not-there")]);
        assert_eq!(cluster.looked_up(), Vec::<String>::new());
        cluster.forget_calls();
    }
    hook.stop().await;
}

/// The first failing entry in visiting order (pod, containers, init containers) is reported.
#[tokio::test]
async fn validate_create_reports_the_first_failure_in_order() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    let spec = |pod_level: Value, first: Value, second: Value, init: Value| {
        json!({
            "serviceAccountName": SA,
            "securityContext": {"windowsOptions": pod_level},
            "initContainers": [container("init", Some(init))],
            "containers": [container("first", Some(first)), container("second", Some(second))]
        })
    };
    let good = options(Some(CREDSPEC), Some(DUMMY_CONTENTS));
    let bad = options(Some(CREDSPEC), Some(OTHER_CONTENTS));
    let nameless = options(None, Some(DUMMY_CONTENTS));
    let cases = [
        (
            spec(bad.clone(), nameless.clone(), bad.clone(), bad.clone()),
            mismatch("pod", POD, CREDSPEC),
        ),
        (
            spec(good.clone(), nameless.clone(), bad.clone(), bad.clone()),
            without_name("container", "first"),
        ),
        (
            spec(good.clone(), good.clone(), bad.clone(), nameless.clone()),
            mismatch("container", "second", CREDSPEC),
        ),
        (
            spec(good.clone(), good.clone(), good.clone(), nameless.clone()),
            without_name("container", "init"),
        ),
    ];
    for (spec, message) in cases {
        hook.validate(&create(NS, &pod_with(spec)))
            .await
            .assert_denied(422, &message);
    }
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// /mutate on CREATE (upstream TestMutateCreateRequest)

#[tokio::test]
async fn mutate_create_matrix_expands_every_name() {
    for random in [true, false] {
        let cluster = FakeCluster::dummy();
        let hook = Hook::start(cluster.clone(), random).await;
        for target in Target::ALL {
            for extras in 0..=5 {
                let pod = matrix_pod(target, options(Some(CREDSPEC), None), extras, false);
                let expected = expected_ops(&pod);
                assert_eq!(expected.len(), extras + 1);
                let admitted = hook.admit(NS, &pod).await;
                let ops = &admitted.mutate.ops;
                if random {
                    assert_eq!(ops.len(), extras + 2, "{target:?}/{extras}: {ops:#?}");
                    assert_eq!(&ops[..=extras], expected.as_slice(), "{target:?}/{extras}");
                    let hostname = random_hostname(&ops[extras + 1]);
                    assert_eq!(admitted.pod["spec"]["hostname"], hostname);
                } else {
                    assert_eq!(ops, &expected, "{target:?}/{extras}");
                    assert!(admitted.pod["spec"].get("hostname").is_none());
                }
                // The target's contents are the spec's, byte for byte.
                let mut patched = admitted.pod.clone();
                assert_eq!(
                    target_options(&mut patched, target)["gmsaCredentialSpec"],
                    DUMMY_CONTENTS
                );
                admitted.validate.assert_untouched();
            }
        }
        hook.stop().await;
    }
}

/// Contents given with the name are left as they are (even when not byte-equal to the spec):
/// only the extra containers get ops, and with none there is no patch at all.
#[tokio::test]
async fn mutate_create_matrix_leaves_given_contents_alone() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    for target in Target::ALL {
        for extras in 0..=5 {
            let pod = matrix_pod(
                target,
                options(Some(CREDSPEC), Some(DUMMY_REORDERED)),
                extras,
                false,
            );
            let expected = expected_ops(&pod);
            assert_eq!(expected.len(), extras);
            let admitted = hook.admit(NS, &pod).await;
            admitted.mutate.assert_patched(&expected);
            if extras == 0 {
                assert!(admitted.mutate.patch_text.is_none());
            }
            let mut patched = admitted.pod.clone();
            assert_eq!(
                target_options(&mut patched, target)["gmsaCredentialSpec"],
                DUMMY_REORDERED
            );
            admitted.validate.assert_untouched();
            // The given contents are not even looked up by /mutate (only /validate compares).
        }
    }
    hook.stop().await;
}

#[tokio::test]
async fn mutate_create_matrix_spec_retrieval_errors() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), true).await;
    for target in Target::ALL {
        for extras in 0..=5 {
            let pod = matrix_pod(target, options(Some(CREDSPEC), None), extras, false);
            cluster.remove_spec(CREDSPEC);
            hook.mutate(&create(NS, &pod))
                .await
                .assert_denied(404, &format!("cred spec {CREDSPEC} does not exist"));
            cluster.set_spec_error(CREDSPEC, "dummy error");
            hook.mutate(&create(NS, &pod)).await.assert_denied(
                500,
                &format!("unable to retrieve the contents of cred spec {CREDSPEC}: dummy error"),
            );
            cluster.set_spec(CREDSPEC, None);
            hook.mutate(&create(NS, &pod)).await.assert_denied(
                417,
                &format!("cred spec {CREDSPEC} does not have a credspec key"),
            );
            cluster.set_spec_value(CREDSPEC, Some(json!("")));
            hook.mutate(&create(NS, &pod)).await.assert_denied(
                417,
                &format!("cred spec {CREDSPEC} does not have a credspec key"),
            );
            cluster.set_spec(CREDSPEC, Some(DUMMY_CREDSPEC));
        }
    }
    hook.stop().await;
}

/// Upstream (e) and (f): name and contents everywhere, so nothing to fetch; with random
/// hostnames the only op is the hostname, unless the pod sets one.
#[tokio::test]
async fn mutate_random_hostname_with_contents_everywhere() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), true).await;
    let full = || options(Some(CREDSPEC), Some(DUMMY_CONTENTS));
    let spec = json!({
        "serviceAccountName": SA,
        "securityContext": {"windowsOptions": full()},
        "initContainers": [container("init", Some(full()))],
        "containers": [container(CONTAINER, Some(full())), container("other", Some(full()))]
    });
    let pod = pod_with(spec);
    // Nothing to fetch: /mutate does not look specs up.
    let answer = hook.mutate(&create(NS, &pod)).await;
    assert_eq!(answer.ops.len(), 1, "{}", answer.body);
    random_hostname(&answer.ops[0]);
    cluster.assert_untouched();
    let admitted = hook.admit(NS, &pod).await;
    assert_eq!(admitted.mutate.ops.len(), 1, "{}", admitted.mutate.body);
    let first = random_hostname(&admitted.mutate.ops[0]);
    admitted.validate.assert_untouched();

    // Each pod gets its own.
    let second = random_hostname(&hook.mutate(&create(NS, &pod)).await.ops[0]);
    assert_ne!(first, second);

    // A hostname the pod sets is kept.
    let mut with_hostname = pod.clone();
    with_hostname["spec"]["hostname"] = json!("my-own-name");
    hook.mutate(&create(NS, &with_hostname))
        .await
        .assert_untouched();

    // An empty hostname is no hostname.
    let mut empty_hostname = pod.clone();
    empty_hostname["spec"]["hostname"] = json!("");
    let answer = hook.mutate(&create(NS, &empty_hostname)).await;
    assert_eq!(answer.ops.len(), 1, "{}", answer.body);
    random_hostname(&answer.ops[0]);

    // Contents without a name do not count as using GMSA.
    let nameless = pod_with(json!({
        "securityContext": {"windowsOptions": options(None, Some(DUMMY_CONTENTS))},
        "containers": [container(CONTAINER, None)]
    }));
    hook.mutate(&create(NS, &nameless)).await.assert_untouched();
    hook.stop().await;
}

/// No de-duplication: a spec named N times is inlined N times, in visiting order.
#[tokio::test]
async fn mutate_inlines_a_spec_once_per_reference() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    let name = || Some(options(Some(CREDSPEC), None));
    let pod = pod_with(json!({
        "serviceAccountName": SA,
        "securityContext": {"windowsOptions": options(Some(CREDSPEC), None)},
        "initContainers": [container("init-a", name()), container("init-b", None), container("init-c", name())],
        "containers": [container("b", None), container("a", name()), container("c", name())]
    }));
    let admitted = hook.admit(NS, &pod).await;
    admitted.mutate.assert_patched(&[
        add(POD_LEVEL, DUMMY_CONTENTS),
        add(&container_path("containers", 1), DUMMY_CONTENTS),
        add(&container_path("containers", 2), DUMMY_CONTENTS),
        add(&container_path("initContainers", 0), DUMMY_CONTENTS),
        add(&container_path("initContainers", 2), DUMMY_CONTENTS),
    ]);
    admitted.validate.assert_untouched();
    hook.stop().await;
}

/// Any lookup error denies the whole pod, naming the first failing reference in order.
#[tokio::test]
async fn mutate_denies_the_whole_pod_on_the_first_error() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), true).await;
    let pod = pod_with(json!({
        "serviceAccountName": SA,
        "securityContext": {"windowsOptions": options(Some(CREDSPEC), None)},
        "initContainers": [container("init", Some(options(Some("missing-b"), None)))],
        "containers": [
            container("ok", Some(options(Some(CREDSPEC), None))),
            container("broken", Some(options(Some("missing-a"), None)))
        ]
    }));
    hook.mutate(&create(NS, &pod))
        .await
        .assert_denied(404, "cred spec missing-a does not exist");
    hook.stop().await;
}

/// Names are looked up exactly as given: no case folding.
#[tokio::test]
async fn mutate_names_are_case_sensitive() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    let pod = matrix_pod(
        Target::Pod,
        options(Some("Dummy-Cred-Spec-Name"), None),
        0,
        false,
    );
    hook.mutate(&create(NS, &pod))
        .await
        .assert_denied(404, "cred spec Dummy-Cred-Spec-Name does not exist");
    hook.stop().await;
}

/// Like upstream, the operating system is not looked at: a Linux pod naming a spec is
/// expanded the same way.
#[tokio::test]
async fn mutate_does_not_look_at_the_operating_system() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    let mut pod = matrix_pod(Target::Pod, options(Some(CREDSPEC), None), 0, false);
    pod["spec"]["os"] = json!({"name": "linux"});
    let admitted = hook.admit(NS, &pod).await;
    admitted
        .mutate
        .assert_patched(&[add(POD_LEVEL, DUMMY_CONTENTS)]);
    admitted.validate.assert_untouched();
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// UPDATE (upstream TestValidateUpdateRequest)

#[tokio::test]
async fn validate_update_matrix_gmsa_settings_are_immutable() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), true).await;
    for target in Target::ALL {
        for extras in 0..=5 {
            let old = matrix_pod(
                target,
                options(Some(CREDSPEC), Some(DUMMY_CONTENTS)),
                extras,
                true,
            );
            let with = |name: Option<&str>, contents: Option<&str>| {
                let mut new = old.clone();
                *target_options(&mut new, target) = options(name, contents);
                new
            };
            let cases = [
                (with(Some(CREDSPEC), Some(DUMMY_CONTENTS)), None),
                (with(Some("new-name"), Some(DUMMY_CONTENTS)), Some("name")),
                (with(Some(CREDSPEC), Some(OTHER_CONTENTS)), Some("contents")),
                // Exact strings: the same JSON written differently is a change.
                (
                    with(Some(CREDSPEC), Some(DUMMY_REORDERED)),
                    Some("contents"),
                ),
                (with(Some(CREDSPEC), None), Some("contents")),
                (with(None, Some(DUMMY_CONTENTS)), Some("name")),
                (
                    with(Some("new-name"), Some(OTHER_CONTENTS)),
                    Some("name and contents"),
                ),
                (with(None, None), Some("name and contents")),
            ];
            for (new, change) in cases {
                let request = update(NS, &old, &new, None);
                // /mutate does nothing on UPDATE.
                hook.mutate(&request).await.assert_untouched();
                let answer = hook.validate(&request).await;
                match change {
                    None => answer.assert_untouched(),
                    Some(what) => {
                        answer.assert_denied(403, &immutable(what, target.kind(), target.name()))
                    }
                }
            }
        }
    }
    // Updates are judged without the cluster.
    cluster.assert_untouched();
    hook.stop().await;
}

#[tokio::test]
async fn validate_update_matches_containers_by_name() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    let full = |name: &str| Some(options(Some(name), Some(&contents_of(name))));
    let old = pod_with(json!({
        "serviceAccountName": SA,
        "securityContext": {"windowsOptions": options(Some(CREDSPEC), Some(DUMMY_CONTENTS))},
        "initContainers": [container("init", full(&extra_credspec_name(2)))],
        "containers": [
            container("a", full(&extra_credspec_name(0))),
            container("b", full(&extra_credspec_name(1))),
            container("plain", None)
        ]
    }));

    // Reordered containers, a new image: allowed.
    let mut reordered = old.clone();
    reordered["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .reverse();
    reordered["spec"]["containers"][0]["image"] = json!("nginx");
    hook.validate(&update(NS, &old, &reordered, None))
        .await
        .assert_untouched();

    // Swapping the settings of two containers changes both; the first in order is reported.
    let mut swapped = old.clone();
    let a = swapped["spec"]["containers"][0]["securityContext"].clone();
    swapped["spec"]["containers"][0]["securityContext"] =
        swapped["spec"]["containers"][1]["securityContext"].clone();
    swapped["spec"]["containers"][1]["securityContext"] = a;
    hook.validate(&update(NS, &old, &swapped, None))
        .await
        .assert_denied(403, &immutable("name and contents", "container", "a"));

    // A container the old pod lacks counts as having had no settings.
    let mut added = old.clone();
    added["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(container("new", full(CREDSPEC)));
    hook.validate(&update(NS, &old, &added, None))
        .await
        .assert_denied(403, &immutable("name and contents", "container", "new"));
    let mut added_name_only = old.clone();
    added_name_only["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(container("new", Some(options(Some(CREDSPEC), None))));
    hook.validate(&update(NS, &old, &added_name_only, None))
        .await
        .assert_denied(403, &immutable("name", "container", "new"));

    // Upstream's asymmetry: settings only the old pod has are not checked.
    let mut dropped = old.clone();
    dropped["spec"]["containers"][1]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    dropped["spec"]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("windowsOptions");
    hook.validate(&update(NS, &old, &dropped, None))
        .await
        .assert_untouched();

    // Init containers are covered too.
    let mut init_changed = old.clone();
    init_changed["spec"]["initContainers"][0]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] =
        json!(CREDSPEC);
    hook.validate(&update(NS, &old, &init_changed, None))
        .await
        .assert_denied(403, &immutable("name", "container", "init"));
    cluster.assert_untouched();
    hook.stop().await;
}

/// kadmit covers ephemeral containers: a new one added through the `ephemeralcontainers`
/// subresource is expanded and authorized like a container on CREATE; existing ones are
/// immutable.
#[tokio::test]
async fn ephemeral_containers_are_expanded_authorized_and_immutable() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), true).await;
    let old = pod_with(json!({
        "serviceAccountName": SA,
        "hostname": "kept",
        "containers": [container(CONTAINER, Some(options(Some(CREDSPEC), Some(DUMMY_CONTENTS))))]
    }));
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] = json!([
        {"name": "debugger", "image": "busybox", "targetContainerName": CONTAINER,
         "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": extra_credspec_name(3)}}}
    ]);
    let request = update(NS, &old, &new, Some("ephemeralcontainers"));
    let mutate = hook.mutate(&request).await;
    mutate.assert_patched(&[add(
        &container_path("ephemeralContainers", 0),
        &extra_contents(3),
    )]);
    let patched = apply(&new, &mutate.ops);
    let request = update(NS, &old, &patched, Some("ephemeralcontainers"));
    hook.mutate(&request).await.assert_untouched();
    hook.validate(&request).await.assert_untouched();
    assert_eq!(
        cluster.asked(),
        vec![use_question(NS, SA, &extra_credspec_name(3))]
    );

    // Its service account may not use the spec: denied.
    cluster.deny_spec(&extra_credspec_name(3), "dummy reason");
    hook.validate(&request).await.assert_denied(
        403,
        &not_authorized(SA, &extra_credspec_name(3), "dummy reason"),
    );

    // A second one is added: only it gets an op; the first is unchanged, so not re-checked.
    cluster.deny_spec("none", "");
    cluster.forget_calls();
    let mut third = patched.clone();
    third["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "debugger-2", "image": "busybox",
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": CREDSPEC}}}));
    let mutate = hook
        .mutate(&update(NS, &patched, &third, Some("ephemeralcontainers")))
        .await;
    mutate.assert_patched(&[add(
        &container_path("ephemeralContainers", 1),
        DUMMY_CONTENTS,
    )]);
    let third = apply(&third, &mutate.ops);
    hook.validate(&update(NS, &patched, &third, Some("ephemeralcontainers")))
        .await
        .assert_untouched();
    assert_eq!(cluster.asked(), vec![use_question(NS, SA, CREDSPEC)]);

    // An existing one's settings changed: denied as immutable.
    let mut changed = patched.clone();
    changed["spec"]["ephemeralContainers"][0]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] =
        json!(CREDSPEC);
    hook.validate(&update(NS, &patched, &changed, Some("ephemeralcontainers")))
        .await
        .assert_denied(403, &immutable("name", "container", "debugger"));
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// When the authorizer cannot answer (kadmit difference: failure.onError, not 403)

#[tokio::test]
async fn authorizer_errors_are_answered_per_on_error() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let cluster = FakeCluster::dummy();
        cluster.set_authorizer(|_| Err(ClusterError::Unavailable("dummy boom".to_owned())));
        let hook = Hook::start_with(cluster.clone(), gmsa_config(false, on_error)).await;
        let pod = matrix_pod(Target::Container, options(Some(CREDSPEC), None), 2, false);
        let answer = hook.validate(&create(NS, &pod)).await;
        check_could_not_decide(&answer, on_error, "dummy boom");
        hook.stop().await;
    }
}

#[track_caller]
fn check_could_not_decide(answer: &Answer, on_error: OnError, cause: &str) {
    const PREFIX: &str = "kadmit policy gmsa could not decide: ";
    match on_error {
        OnError::Deny => {
            answer.assert_denied_starting(500, PREFIX);
            assert!(answer.message().contains(cause), "{}", answer.body);
            assert!(
                answer.message().ends_with("(failure.onError: deny)"),
                "{}",
                answer.body
            );
            assert_eq!(answer.warnings(), Vec::<String>::new());
        }
        OnError::Allow => {
            assert!(answer.allowed(), "{}", answer.body);
            assert_eq!(answer.ops, Vec::<Value>::new());
            let warnings = answer.warnings();
            assert_eq!(warnings.len(), 1, "{}", answer.body);
            assert!(warnings[0].starts_with(PREFIX), "{warnings:?}");
            assert!(warnings[0].contains(cause), "{warnings:?}");
            assert!(
                warnings[0].ends_with("allowed (failure.onError: allow)"),
                "{warnings:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_hanging_authorizer_is_answered_before_the_deadline() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let cluster = FakeCluster::dummy();
        let gate = Gate::default();
        let waiting = gate.clone();
        cluster.set_authorizer(move |_| {
            waiting.wait();
            Ok(allowed())
        });
        let hook = Hook::start_with(cluster.clone(), gmsa_config(false, on_error)).await;
        let pod = matrix_pod(Target::Pod, options(Some(CREDSPEC), None), 1, false);
        let started = Instant::now();
        let answer = hook.send("/validate?timeout=2s", &create(NS, &pod)).await;
        let elapsed = started.elapsed();
        gate.open();
        assert!(
            elapsed < Duration::from_secs(2),
            "answered after {elapsed:?}"
        );
        check_could_not_decide(&answer, on_error, "");
        hook.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP (upstream webhook_http_test.go)

#[tokio::test]
async fn http_mutate_success_and_validate_failure() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    let pod = matrix_pod(Target::Pod, options(Some(CREDSPEC), None), 0, false);
    for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let answer = hook
            .send_version("/mutate", &create(NS, &pod), version)
            .await;
        answer.assert_patched(&[add(POD_LEVEL, DUMMY_CONTENTS)]);
        // On the wire: exactly the keys op, path, value, in that order.
        let escaped = serde_json::to_string(DUMMY_CONTENTS).unwrap();
        assert_eq!(
            answer.patch_text.as_deref(),
            Some(format!(r#"[{{"op":"add","path":"{POD_LEVEL}","value":{escaped}}}]"#).as_str())
        );
    }
    cluster.deny_spec(CREDSPEC, "dummy reason");
    let patched = apply(&pod, &[add(POD_LEVEL, DUMMY_CONTENTS)]);
    let answer = hook.validate(&create(NS, &patched)).await;
    answer.assert_denied(403, &not_authorized(SA, CREDSPEC, "dummy reason"));
    assert!(
        answer
            .message()
            .contains("is not authorized to `use` GMSA cred spec")
    );

    // Method, content type, path.
    for endpoint in ["/mutate", "/validate"] {
        let response = hook
            .client
            .put(hook.server.url(endpoint))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "PUT {endpoint}");
        let response = hook
            .client
            .post(hook.server.url(endpoint))
            .header("content-type", "text/plain")
            .body(serde_json::to_vec(&json!({"request": create(NS, &pod)})).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 415, "text/plain {endpoint}");
    }
    let response = hook
        .client
        .post(hook.server.url("/i_dont_exist"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    hook.stop().await;
}

/// Go's HTML-safe escaping, byte for byte, without ../shared: `<`, `>` and `&` as `\u00XX`.
#[tokio::test]
async fn inlined_contents_use_go_escapes() {
    let cluster = FakeCluster::empty();
    cluster.set_spec(
        "ccg",
        Some(
            r#"{"CmsPlugins": ["ActiveDirectory"], "ActiveDirectoryConfig": {"HostAccountConfig": {"PortableCcgVersion": "1", "PluginInput": "contoso.com:gmsaccg:<password>&more", "PluginGUID": "{GDMA0342-266A-4D1P-831J-20990E82944F}"}}, "Note": "tab\tquote\"backslash\\line\nsep\u2028x"}"#,
        ),
    );
    let hook = Hook::start(cluster.clone(), false).await;
    let pod = matrix_pod(Target::Container, options(Some("ccg"), None), 0, false);
    let admitted = hook.admit(NS, &pod).await;
    let expected = r#"{"ActiveDirectoryConfig":{"HostAccountConfig":{"PluginGUID":"{GDMA0342-266A-4D1P-831J-20990E82944F}","PluginInput":"contoso.com:gmsaccg:\u003cpassword\u003e\u0026more","PortableCcgVersion":"1"}},"CmsPlugins":["ActiveDirectory"],"Note":"tab\tquote\"backslash\\line\nsep\u2028x"}"#;
    admitted
        .mutate
        .assert_patched(&[add(&container_path("containers", 0), expected)]);
    admitted.validate.assert_untouched();
    // Contents with the characters unescaped are the same JSON object: allowed.
    let mut raw = pod.clone();
    *target_options(&mut raw, Target::Container) = options(
        Some("ccg"),
        Some(
            "{\"CmsPlugins\":[\"ActiveDirectory\"],\"Note\":\"tab\\tquote\\\"backslash\\\\line\\nsep\u{2028}x\",\"ActiveDirectoryConfig\":{\"HostAccountConfig\":{\"PortableCcgVersion\":\"1\",\"PluginInput\":\"contoso.com:gmsaccg:<password>&more\",\"PluginGUID\":\"{GDMA0342-266A-4D1P-831J-20990E82944F}\"}}}",
        ),
    );
    hook.validate(&create(NS, &raw)).await.assert_untouched();
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Findings: behaviour that contradicts the spec (kept apart so the rest stays green)

/// Spec §2: the credspec is re-encoded with Go `encoding/json` (upstream builds with Go 1.23).
/// Since Go 1.22, `json.Marshal` writes U+0008 and U+000C as `\b` and `\f`, not `\u0008` and
/// `\u000c`.
#[tokio::test]
async fn go_json_writes_backspace_and_formfeed_short() {
    let cluster = FakeCluster::empty();
    cluster.set_spec_value("ctl", Some(json!({"A": "x\u{8}y\u{c}z\u{1}"})));
    let hook = Hook::start(cluster.clone(), false).await;
    let pod = matrix_pod(Target::Pod, options(Some("ctl"), None), 0, false);
    let answer = hook.mutate(&create(NS, &pod)).await;
    answer.assert_patched(&[add(POD_LEVEL, r#"{"A":"x\by\fz\u0001"}"#)]);
    hook.stop().await;
}

/// Spec §2: an empty-string name is a failed GET (500 `unable to retrieve the contents of cred
/// spec : <err>`), not a missing spec.
#[tokio::test]
async fn empty_credspec_name_is_a_retrieval_error() {
    let cluster = FakeCluster::dummy();
    let hook = Hook::start(cluster.clone(), false).await;
    let pod = matrix_pod(Target::Pod, options(Some(""), None), 0, false);
    hook.mutate(&create(NS, &pod))
        .await
        .assert_denied_starting(500, "unable to retrieve the contents of cred spec : ");
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Upstream's integration cases, from ../shared/conformance/gmsa, on three cluster views

/// The conformance folder and the expected inlined strings, or `None` (test skipped).
struct Conformance {
    dir: PathBuf,
    /// Template file name → exact string upstream expects in the pod.
    expected: BTreeMap<String, String>,
}

impl Conformance {
    fn load(test: &str) -> Option<Conformance> {
        let dir = common::shared_dir(test)?.join("conformance/gmsa");
        let text = std::fs::read_to_string(dir.join("expected-inlined-credspecs.txt")).unwrap();
        let expected = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (file, contents) = line.split_once('\t').unwrap();
                (file.to_owned(), contents.to_owned())
            })
            .collect();
        Some(Conformance { dir, expected })
    }

    fn template(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join("integration-templates").join(file)).unwrap()
    }

    fn expected(&self, file: &str) -> &str {
        &self.expected[file]
    }
}

/// The values upstream's integration tests fill the templates with.
#[derive(Clone)]
struct Params {
    test: String,
    namespace: String,
    credspec_names: Vec<String>,
    service_account: String,
    cluster_role: String,
    role_binding: String,
    credspec_content: String,
    image: String,
}

impl Params {
    fn new(test: &str) -> Params {
        Params {
            test: test.to_owned(),
            namespace: "gmsa-webhook-test-8c1f5e2a9b7d4c3e".to_owned(),
            credspec_names: (0..3).map(|i| format!("{test}-cred-spec-{i}")).collect(),
            service_account: format!("{test}-service-account"),
            cluster_role: format!("{test}-credspecs-users"),
            role_binding: format!("{test}-use-credspecs"),
            credspec_content: String::new(),
            image: String::new(),
        }
    }

    fn value(&self, name: &str) -> &str {
        match name {
            "TestName" => &self.test,
            "Namespace" => &self.namespace,
            "ServiceAccountName" => &self.service_account,
            "ClusterRoleName" => &self.cluster_role,
            "RoleBindingName" => &self.role_binding,
            "CredSpecContent" => &self.credspec_content,
            "Image" => &self.image,
            other => panic!("unknown template value {other}"),
        }
    }

    /// Fills `template` the way Go's text/template does for the constructs these templates use:
    /// `{{ .X }}`, `{{ index .CredSpecNames i }}`, `{{- if .X }}`/`{{- else }}`/`{{- end }}`
    /// on lines of their own, and `{{- range }}` over `ExtraSpecLines` (always empty here) or
    /// `CredSpecNames`. A directive line disappears with its line break, as `{{-` trims it.
    fn render(&self, template: &str) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut conditions: Vec<bool> = Vec::new();
        let mut range: Option<(String, Vec<String>)> = None;
        for line in template.lines() {
            let directive = line.trim();
            if let Some((list, body)) = range.as_mut() {
                if directive == "{{- end }}" {
                    if list.contains(".CredSpecNames") {
                        for name in &self.credspec_names {
                            for body_line in body.iter() {
                                out.push(body_line.replace("{{ $csn }}", name));
                            }
                        }
                    } else {
                        assert!(list.contains(".ExtraSpecLines"), "{list}");
                    }
                    range = None;
                } else {
                    body.push(line.to_owned());
                }
                continue;
            }
            if directive.starts_with("{{- range ") {
                range = Some((directive.to_owned(), Vec::new()));
            } else if let Some(name) = directive
                .strip_prefix("{{- if .")
                .and_then(|rest| rest.strip_suffix(" }}"))
            {
                conditions.push(!self.value(name).is_empty());
            } else if directive == "{{- else }}" {
                let condition = conditions.pop().unwrap();
                conditions.push(!condition);
            } else if directive == "{{- end }}" {
                conditions.pop().unwrap();
            } else if conditions.iter().all(|c| *c) {
                out.push(self.substitute(line));
            }
        }
        let rendered = out.join("\n") + "\n";
        assert!(!rendered.contains("{{"), "unrendered template:\n{rendered}");
        rendered
    }

    fn substitute(&self, line: &str) -> String {
        let mut line = line.to_owned();
        for name in [
            "TestName",
            "Namespace",
            "ServiceAccountName",
            "ClusterRoleName",
            "RoleBindingName",
            "CredSpecContent",
            "Image",
        ] {
            line = line.replace(&format!("{{{{ .{name} }}}}"), self.value(name));
        }
        for (i, credspec) in self.credspec_names.iter().enumerate() {
            line = line.replace(&format!("{{{{ index .CredSpecNames {i} }}}}"), credspec);
        }
        line
    }
}

/// Who may `use` which specs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rbac {
    /// A ClusterRole listing the test's specs by name (`credspecs-users-rbac-role.yml`), bound
    /// to the service account in the test namespace.
    Listed,
    /// A ClusterRole for all specs (`all-credspecs-users-rbac-role.yml`), bound likewise.
    All,
    /// The ClusterRole listing the specs, but no RoleBinding.
    Unbound,
}

/// The reason the in-test and the fake API server's authorizers give for a denial.
const DENY_REASON: &str = "no RBAC policy matched";

/// Who may `use` which spec: what the world's RBAC grants, as the API server would answer.
#[derive(Clone, Debug)]
struct Grants {
    namespace: String,
    service_account: String,
    rbac: Rbac,
    /// The spec names the role lists.
    listed: Vec<String>,
}

impl Grants {
    fn allows(&self, request: &AccessRequest) -> bool {
        let subject = request.user
            == format!(
                "system:serviceaccount:{}:{}",
                self.namespace, self.service_account
            )
            && request.namespace == self.namespace;
        let rule = request.verb == "use"
            && request.group == "windows.k8s.io"
            && request.resource == "gmsacredentialspecs";
        let name = match self.rbac {
            Rbac::All => true,
            Rbac::Listed => self.listed.contains(&request.name),
            Rbac::Unbound => false,
        };
        subject && rule && name
    }

    fn decide(&self, request: &AccessRequest) -> AccessDecision {
        if self.allows(request) {
            allowed()
        } else {
            denied(DENY_REASON)
        }
    }
}

/// One integration test's cluster: its specs, service account and RBAC, rendered from the
/// templates.
struct World {
    params: Params,
    /// Name and `credspec` (if any) of every spec created.
    specs: Vec<(String, Option<Value>)>,
    /// Every object, as rendered YAML.
    documents: Vec<String>,
    grants: Grants,
}

impl World {
    /// `credspec_templates[i]` must create the test's i-th spec name.
    fn new(
        conformance: &Conformance,
        params: &Params,
        credspec_templates: &[&str],
        rbac: Rbac,
    ) -> World {
        let mut documents = Vec::new();
        let mut specs = Vec::new();
        for (i, file) in credspec_templates.iter().enumerate() {
            let rendered = params.render(&conformance.template(file));
            let object: Value = serde_yaml_ng::from_str(&rendered).unwrap();
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            assert_eq!(name, params.credspec_names[i], "{file}");
            specs.push((name, object.get("credspec").cloned()));
            documents.push(rendered);
        }
        documents.push(params.render(&conformance.template("service-account.yml")));
        let role = match rbac {
            Rbac::All => "all-credspecs-users-rbac-role.yml",
            Rbac::Listed | Rbac::Unbound => "credspecs-users-rbac-role.yml",
        };
        documents.push(params.render(&conformance.template(role)));
        if rbac != Rbac::Unbound {
            documents.push(params.render(&conformance.template("sa-rbac-binding.yml")));
        }
        World {
            params: params.clone(),
            specs,
            documents,
            grants: Grants {
                namespace: params.namespace.clone(),
                service_account: params.service_account.clone(),
                rbac,
                listed: params.credspec_names.clone(),
            },
        }
    }

    fn snapshot_text(&self) -> String {
        self.documents.join("---\n")
    }

    /// The pod the API server would create from a rendered `Pod` or `Deployment` manifest
    /// (a ReplicaSet pod keeps the template's metadata and spec and gets a generated name).
    fn pod(&self, conformance: &Conformance, template: &str) -> Value {
        self.pod_with(conformance, template, &self.params)
    }

    fn pod_with(&self, conformance: &Conformance, template: &str, params: &Params) -> Value {
        let manifest: Value =
            serde_yaml_ng::from_str(&params.render(&conformance.template(template))).unwrap();
        match manifest["kind"].as_str() {
            Some("Pod") => manifest,
            Some("Deployment") => {
                let template = &manifest["spec"]["template"];
                let mut metadata = template["metadata"].clone();
                let prefix = format!("{}-6b8d9f7c54-", params.test);
                metadata["name"] = json!(format!("{prefix}x7k2q"));
                metadata["generateName"] = json!(prefix);
                metadata["namespace"] = json!(params.namespace);
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
            }
            other => panic!("{template}: unexpected kind {other:?}"),
        }
    }
}

/// Which cluster view answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// [`FakeCluster`] holding the world's specs, authorizing per [`Grants`].
    Fake,
    /// `Snapshot::parse` of the world's manifests: RBAC evaluated by kadmit.
    Snapshot,
    /// `LiveCluster` watching the fake API server, which serves the specs and answers
    /// SubjectAccessReviews per [`Grants`].
    Live,
}

/// A server on a backend, and what keeps the backend alive.
struct Running {
    hook: Hook,
    backend: Backend,
    grants: Grants,
    api: Option<live::Api>,
}

impl Running {
    async fn start(backend: Backend, world: &World, random_hostname: bool) -> Running {
        let (cluster, api): (Arc<dyn ClusterView>, Option<live::Api>) = match backend {
            Backend::Fake => {
                let cluster = FakeCluster::empty();
                for (name, credspec) in &world.specs {
                    cluster.set_spec_value(name, credspec.clone());
                }
                let grants = world.grants.clone();
                cluster.set_authorizer(move |request| Ok(grants.decide(request)));
                (cluster, None)
            }
            Backend::Snapshot => {
                let text = world.snapshot_text();
                let snapshot = Snapshot::parse(&text)
                    .unwrap_or_else(|err| panic!("snapshot rejected: {err}\n{text}"));
                (Arc::new(snapshot), None)
            }
            Backend::Live => {
                let api = live::Api::start(world).await;
                (Arc::new(api.cluster().await), Some(api))
            }
        };
        Running {
            hook: Hook::start(cluster, random_hostname).await,
            backend,
            grants: world.grants.clone(),
            api,
        }
    }

    /// The fake API server answers every review alike (it evaluates nothing): before a request
    /// reaches /validate, program it with what RBAC would answer for `pod`'s service account and
    /// the specs it names (denied if any is not granted).
    fn program_authorizer(&self, pod: &Value) {
        let Some(api) = &self.api else {
            return;
        };
        let sa = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        let mut names = Vec::new();
        if let Some(name) =
            pod.pointer("/spec/securityContext/windowsOptions/gmsaCredentialSpecName")
        {
            names.push(name.as_str().unwrap().to_owned());
        }
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            if let Some(name) = c.pointer("/securityContext/windowsOptions/gmsaCredentialSpecName")
            {
                names.push(name.as_str().unwrap().to_owned());
            }
        }
        let all_granted = names.iter().all(|name| {
            self.grants
                .allows(&use_question(&self.grants.namespace, sa, name))
        });
        api.server.authorizer().set_answer(if all_granted {
            SarAnswer::allow("")
        } else {
            SarAnswer::deny(DENY_REASON)
        });
    }

    async fn admit(&self, pod: &Value) -> Admitted {
        self.program_authorizer(pod);
        let admitted = self.hook.admit(&self.grants.namespace, pod).await;
        self.check_reviews();
        admitted
    }

    async fn mutate(&self, request: &Value) -> Answer {
        self.hook.mutate(request).await
    }

    async fn validate(&self, request: &Value) -> Answer {
        self.program_authorizer(&request["object"]);
        let answer = self.hook.validate(request).await;
        self.check_reviews();
        answer
    }

    /// Live: every LocalSubjectAccessReview asks, in the request namespace, about the pod's
    /// service account and a GMSA spec, with the groups of a service account.
    #[track_caller]
    fn check_reviews(&self) {
        let Some(api) = &self.api else {
            return;
        };
        let namespace = &self.grants.namespace;
        for review in api.server.authorizer().reviews() {
            assert_eq!(&review.namespace, namespace);
            let spec = &review.body["spec"];
            assert!(
                spec["user"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("system:serviceaccount:{namespace}:")),
                "{spec}"
            );
            assert_eq!(
                spec["groups"],
                json!([
                    "system:serviceaccounts",
                    format!("system:serviceaccounts:{namespace}")
                ]),
                "{spec}"
            );
            let attributes = &spec["resourceAttributes"];
            assert_eq!(attributes["namespace"], namespace.as_str(), "{spec}");
            assert_eq!(attributes["verb"], "use", "{spec}");
            assert_eq!(attributes["group"], "windows.k8s.io", "{spec}");
            assert_eq!(attributes["resource"], "gmsacredentialspecs", "{spec}");
            assert!(attributes["name"].is_string(), "{spec}");
        }
    }

    /// Checks the exact 403 for service account `sa` and `credspec`, with the reason the
    /// backend's authorizer gives.
    #[track_caller]
    fn assert_unauthorized(&self, answer: &Answer, sa: &str, credspec: &str) {
        match self.backend {
            Backend::Fake | Backend::Live => {
                answer.assert_denied(403, &not_authorized(sa, credspec, DENY_REASON));
            }
            // Like upstream RBAC, kadmit's gives no reason when no rule matches.
            Backend::Snapshot => answer.assert_denied(403, &not_authorized(sa, credspec, "")),
        }
    }

    async fn stop(self) {
        self.hook.stop().await;
    }
}

/// The `gmsaCredentialSpec` of the pod (pod level) or of its container `name`.
fn contents_at<'a>(pod: &'a Value, container: Option<&str>) -> &'a Value {
    match container {
        None => &pod["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"],
        Some(name) => pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| &c["securityContext"]["windowsOptions"]["gmsaCredentialSpec"])
            .unwrap_or(&Value::Null),
    }
}

/// Runs `$case(backend)` as one test per backend: `<case>::fake`, `::snapshot`, `::live`.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn fake() {
                    super::$case(super::Backend::Fake).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn snapshot() {
                    super::$case(super::Backend::Snapshot).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn live() {
                    super::$case(super::Backend::Live).await;
                }
            }
        )*
    };
}

on_every_backend!(
    pod_level_name_is_expanded,
    container_level_name_is_expanded,
    several_containers_with_their_own_specs,
    preset_matching_contents_are_kept,
    service_account_without_binding_is_denied,
    spec_not_listed_in_the_role_is_denied,
    unknown_spec_is_not_found,
    contents_without_name_are_denied,
    preset_unmatching_contents_are_denied,
    single_pods_gmsa_settings_cannot_change,
    image_only_update_is_allowed,
    host_account_config_is_inlined_with_go_escapes,
    random_hostnames,
    spec_without_credspec_is_417,
);

/// Upstream integration case 1: pod-level name → the pod's contents are credspec-0's, byte for
/// byte.
async fn pod_level_name_is_expanded(backend: Backend) {
    let Some(conformance) = Conformance::load("pod_level_name_is_expanded") else {
        return;
    };
    let params = Params::new("happy-path-with-pod-level-cred-spec");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-gmsa.yml");
    let admitted = running.admit(&pod).await;
    let expected = conformance.expected("credspec-0.yml");
    admitted.mutate.assert_patched(&[add(POD_LEVEL, expected)]);
    assert_eq!(contents_at(&admitted.pod, None), expected);
    admitted.validate.assert_untouched();
    running.stop().await;
}

/// Upstream integration case 2: container-level name → container `nginx` gets credspec-0's
/// contents.
async fn container_level_name_is_expanded(backend: Backend) {
    let Some(conformance) = Conformance::load("container_level_name_is_expanded") else {
        return;
    };
    let params = Params::new("happy-path-with-container-level-cred-spec");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-container-level-gmsa.yml");
    let admitted = running.admit(&pod).await;
    let expected = conformance.expected("credspec-0.yml");
    admitted
        .mutate
        .assert_patched(&[add(&container_path("containers", 0), expected)]);
    assert_eq!(contents_at(&admitted.pod, Some("nginx")), expected);
    admitted.validate.assert_untouched();
    running.stop().await;
}

/// Upstream integration case 3: nginx0 → cs0, pod → cs1 (a `v1alpha1` object), nginx1 none, nginx2
/// → cs2; pod level first, then containers by index.
async fn several_containers_with_their_own_specs(backend: Backend) {
    let Some(conformance) = Conformance::load("several_containers_with_their_own_specs") else {
        return;
    };
    let params = Params::new("happy-path-with-several-containers-with-different-creds");
    let world = World::new(
        &conformance,
        &params,
        &["credspec-0.yml", "credspec-1.yml", "credspec-2.yml"],
        Rbac::Listed,
    );
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "several-containers-with-gmsa.yml");
    let admitted = running.admit(&pod).await;
    let cs = |i: usize| {
        conformance
            .expected(&format!("credspec-{i}.yml"))
            .to_owned()
    };
    admitted.mutate.assert_patched(&[
        add(POD_LEVEL, &cs(1)),
        add(&container_path("containers", 0), &cs(0)),
        add(&container_path("containers", 2), &cs(2)),
    ]);
    assert_eq!(contents_at(&admitted.pod, None), &json!(cs(1)));
    assert_eq!(contents_at(&admitted.pod, Some("nginx0")), &json!(cs(0)));
    assert_eq!(contents_at(&admitted.pod, Some("nginx1")), &Value::Null);
    assert_eq!(contents_at(&admitted.pod, Some("nginx2")), &json!(cs(2)));
    admitted.validate.assert_untouched();
    running.stop().await;
}

/// Upstream integration case 4: name with matching contents written differently → admitted,
/// contents kept as given.
async fn preset_matching_contents_are_kept(backend: Backend) {
    let Some(conformance) = Conformance::load("preset_matching_contents_are_kept") else {
        return;
    };
    let params = Params::new("happy-path-with-pre-set-matching-contents");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-pre-set-matching-contents.yml");
    let given = contents_at(&pod, None).clone();
    let admitted = running.admit(&pod).await;
    admitted.mutate.assert_untouched();
    admitted.validate.assert_untouched();
    let kept = contents_at(&admitted.pod, None);
    assert_eq!(kept, &given);
    let expected = conformance.expected("credspec-0.yml");
    assert_ne!(kept, expected);
    let as_json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(as_json(kept.as_str().unwrap()), as_json(expected));
    running.stop().await;
}

/// Upstream integration case 5: a service account without a RoleBinding → 403 from /validate
/// (/mutate expands).
async fn service_account_without_binding_is_denied(backend: Backend) {
    let Some(conformance) = Conformance::load("service_account_without_binding_is_denied") else {
        return;
    };
    let params = Params::new("cannot-use-cred-spec-if-not-authorized");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Unbound);
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-gmsa.yml");
    let admitted = running.admit(&pod).await;
    admitted
        .mutate
        .assert_patched(&[add(POD_LEVEL, conformance.expected("credspec-0.yml"))]);
    let sa = &params.service_account;
    running.assert_unauthorized(&admitted.validate, sa, &params.credspec_names[0]);
    // Again (a cached denial, live): the same answer.
    let again = running
        .validate(&create(&params.namespace, &admitted.pod))
        .await;
    running.assert_unauthorized(&again, sa, &params.credspec_names[0]);
    running.stop().await;
}

/// A role listing specs by name grants those only: an existing spec it does not list is denied.
async fn spec_not_listed_in_the_role_is_denied(backend: Backend) {
    let Some(conformance) = Conformance::load("spec_not_listed_in_the_role_is_denied") else {
        return;
    };
    let params = Params::new("cannot-use-unlisted-cred-spec");
    let mut listing = params.clone();
    listing.credspec_names.truncate(2);
    let mut world = World::new(
        &conformance,
        &params,
        &["credspec-0.yml", "credspec-1.yml", "credspec-2.yml"],
        Rbac::Listed,
    );
    // The role lists the first two names only.
    let role_index = world
        .documents
        .iter()
        .position(|d| d.contains("kind: ClusterRole"))
        .unwrap();
    world.documents[role_index] =
        listing.render(&conformance.template("credspecs-users-rbac-role.yml"));
    assert!(!world.documents[role_index].contains(&params.credspec_names[2]));
    world.grants.listed.truncate(2);
    let running = Running::start(backend, &world, false).await;
    let mut pod = world.pod(&conformance, "simple-with-gmsa.yml");
    pod["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] =
        json!(params.credspec_names[2]);
    let admitted = running.admit(&pod).await;
    admitted
        .mutate
        .assert_patched(&[add(POD_LEVEL, conformance.expected("credspec-2.yml"))]);
    running.assert_unauthorized(
        &admitted.validate,
        &params.service_account,
        &params.credspec_names[2],
    );
    // A listed one is fine.
    let listed = world.pod(&conformance, "simple-with-container-level-gmsa.yml");
    running.admit(&listed).await.validate.assert_untouched();
    running.stop().await;
}

/// Upstream integration case 6: `i-sure-dont-exist` (the service account may use all specs) → 404
/// from /mutate.
async fn unknown_spec_is_not_found(backend: Backend) {
    let Some(conformance) = Conformance::load("unknown_spec_is_not_found") else {
        return;
    };
    let params = Params::new("cannot-use-unknown-cred-spec");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::All);
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-unknown-gmsa.yml");
    running
        .mutate(&create(&params.namespace, &pod))
        .await
        .assert_denied(404, "cred spec i-sure-dont-exist does not exist");
    // With contents, /validate looks it up too.
    let mut with_contents = pod.clone();
    with_contents["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"] =
        json!(conformance.expected("credspec-0.yml"));
    running
        .validate(&create(&params.namespace, &with_contents))
        .await
        .assert_denied(404, "cred spec i-sure-dont-exist does not exist");
    running.stop().await;
}

/// Upstream integration case 7, 8: contents without a name, pod level and container level → 422
/// from /validate.
async fn contents_without_name_are_denied(backend: Backend) {
    let Some(conformance) = Conformance::load("contents_without_name_are_denied") else {
        return;
    };
    let params = Params::new("cannot-specify-contents-without-name");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    let running = Running::start(backend, &world, false).await;
    for (template, kind, name) in [
        (
            "simple-with-preset-gmsa-pod-level-contents.yml",
            "pod",
            format!("{}-6b8d9f7c54-x7k2q", params.test),
        ),
        (
            "simple-with-preset-gmsa-container-level-contents.yml",
            "container",
            "nginx".to_owned(),
        ),
    ] {
        let pod = world.pod(&conformance, template);
        let admitted = running.admit(&pod).await;
        admitted.mutate.assert_untouched();
        admitted
            .validate
            .assert_denied(422, &without_name(kind, &name));
    }
    running.stop().await;
}

/// Upstream integration case 9: name with contents of another spec → 422 from /validate.
async fn preset_unmatching_contents_are_denied(backend: Backend) {
    let Some(conformance) = Conformance::load("preset_unmatching_contents_are_denied") else {
        return;
    };
    let params = Params::new("cannot-use-unmatching-contents");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-pre-set-unmatching-contents.yml");
    let admitted = running.admit(&pod).await;
    admitted.mutate.assert_untouched();
    admitted.validate.assert_denied(
        422,
        &mismatch(
            "pod",
            &format!("{}-6b8d9f7c54-x7k2q", params.test),
            &params.credspec_names[0],
        ),
    );
    running.stop().await;
}

/// Upstream integration case 10, 11: a single pod (pod level, then container level) comes up with
/// cs0; re-applying it with other contents, another name, or both is refused.
async fn single_pods_gmsa_settings_cannot_change(backend: Backend) {
    let Some(conformance) = Conformance::load("single_pods_gmsa_settings_cannot_change") else {
        return;
    };
    let params = Params::new("cannot-update-gmsa-settings");
    let world = World::new(
        &conformance,
        &params,
        &["credspec-0.yml", "credspec-1.yml"],
        Rbac::Listed,
    );
    let running = Running::start(backend, &world, false).await;
    let expected = conformance.expected("credspec-0.yml");
    for (template, kind, name, container) in [
        ("single-pod-with-gmsa.yml", "pod", params.test.clone(), None),
        (
            "single-pod-with-container-level-gmsa.yml",
            "container",
            params.test.clone(),
            Some(params.test.as_str()),
        ),
    ] {
        let pod = world.pod(&conformance, template);
        let admitted = running.admit(&pod).await;
        admitted.validate.assert_untouched();
        assert_eq!(contents_at(&admitted.pod, container), expected);
        let live = admitted.pod;

        // Re-applied with other contents: the manifest now carries them.
        let mut other_contents = params.clone();
        other_contents.credspec_content = conformance.expected("credspec-1.yml").to_owned();
        let applied = world.pod_with(&conformance, template, &other_contents);
        assert_eq!(
            contents_at(&applied, container),
            conformance.expected("credspec-1.yml")
        );
        let request = update(&params.namespace, &live, &applied, None);
        running.mutate(&request).await.assert_untouched();
        running
            .validate(&request)
            .await
            .assert_denied(403, &immutable("contents", kind, &name));

        // Re-applied with another name: the live contents stay (three-way merge).
        let mut other_name = live.clone();
        let pointer = match container {
            None => "/spec/securityContext/windowsOptions".to_owned(),
            Some(_) => "/spec/containers/0/securityContext/windowsOptions".to_owned(),
        };
        other_name.pointer_mut(&pointer).unwrap()["gmsaCredentialSpecName"] =
            json!(params.credspec_names[1]);
        running
            .validate(&update(&params.namespace, &live, &other_name, None))
            .await
            .assert_denied(403, &immutable("name", kind, &name));

        // Both.
        let mut both = params.clone();
        both.credspec_names[0] = params.credspec_names[1].clone();
        both.credspec_content = conformance.expected("credspec-1.yml").to_owned();
        let applied = world.pod_with(&conformance, template, &both);
        running
            .validate(&update(&params.namespace, &live, &applied, None))
            .await
            .assert_denied(403, &immutable("name and contents", kind, &name));
    }
    running.stop().await;
}

/// Upstream integration case 13: re-applying the same pod with only its image changed is allowed.
async fn image_only_update_is_allowed(backend: Backend) {
    let Some(conformance) = Conformance::load("image_only_update_is_allowed") else {
        return;
    };
    let params = Params::new("can-update-image");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "single-pod-with-gmsa.yml");
    assert_eq!(pod["spec"]["containers"][0]["image"], PAUSE);
    let admitted = running.admit(&pod).await;
    admitted.validate.assert_untouched();
    let mut with_image = params.clone();
    with_image.image = "nginx".to_owned();
    let applied = world.pod_with(&conformance, "single-pod-with-gmsa.yml", &with_image);
    // kubectl apply merges: the live contents stay, the image changes.
    let mut new = admitted.pod.clone();
    new["spec"]["containers"][0]["image"] = applied["spec"]["containers"][0]["image"].clone();
    assert_eq!(new["spec"]["containers"][0]["image"], "nginx");
    let request = update(&params.namespace, &admitted.pod, &new, None);
    running.mutate(&request).await.assert_untouched();
    running.validate(&request).await.assert_untouched();
    running.stop().await;
}

/// Upstream integration case 12: HostAccountConfig: `<password>` is inlined as
/// `\u003cpassword\u003e`, byte for byte.
async fn host_account_config_is_inlined_with_go_escapes(backend: Backend) {
    let Some(conformance) = Conformance::load("host_account_config_is_inlined_with_go_escapes")
    else {
        return;
    };
    let params = Params::new("happy-path-with-host-account-config");
    let world = World::new(
        &conformance,
        &params,
        &["credspec-with-hostagentconfig.yml"],
        Rbac::Listed,
    );
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-gmsa.yml");
    let admitted = running.admit(&pod).await;
    let expected = conformance.expected("credspec-with-hostagentconfig.yml");
    assert!(expected.contains(r"contoso.com:gmsaccg:\u003cpassword\u003e"));
    admitted.mutate.assert_patched(&[add(POD_LEVEL, expected)]);
    assert_eq!(contents_at(&admitted.pod, None), expected);
    // On the wire the backslashes of the escapes are escaped once more.
    assert!(
        admitted
            .mutate
            .patch_text
            .as_deref()
            .unwrap()
            .contains(r"contoso.com:gmsaccg:\\u003cpassword\\u003e"),
        "{:?}",
        admitted.mutate.patch_text
    );
    admitted.validate.assert_untouched();
    running.stop().await;
}

/// Upstream integration case 17: random hostnames: a GMSA pod gets a 15-character one; a hostname
/// the pod sets is kept; a pod without GMSA gets none.
async fn random_hostnames(backend: Backend) {
    let Some(conformance) = Conformance::load("random_hostnames") else {
        return;
    };
    let params = Params::new("random-hostname");
    let world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    let running = Running::start(backend, &world, true).await;
    let expected = conformance.expected("credspec-0.yml");

    let pod = world.pod(&conformance, "simple-with-gmsa.yml");
    let admitted = running.admit(&pod).await;
    let ops = &admitted.mutate.ops;
    assert_eq!(ops.len(), 2, "{ops:#?}");
    assert_eq!(ops[0], add(POD_LEVEL, expected));
    let hostname = random_hostname(&ops[1]);
    assert_ne!(hostname, params.test);
    assert_eq!(admitted.pod["spec"]["hostname"], hostname);
    admitted.validate.assert_untouched();

    let pod = world.pod(&conformance, "simple-with-gmsa-hostname.yml");
    assert_eq!(pod["spec"]["hostname"], params.test);
    let admitted = running.admit(&pod).await;
    admitted.mutate.assert_patched(&[add(POD_LEVEL, expected)]);
    assert_eq!(admitted.pod["spec"]["hostname"], params.test);
    admitted.validate.assert_untouched();

    let pod = world.pod(&conformance, "simple-without-gmsa.yml");
    let admitted = running.admit(&pod).await;
    admitted.mutate.assert_untouched();
    admitted.validate.assert_untouched();
    assert!(admitted.pod["spec"].get("hostname").is_none());
    running.stop().await;
}

/// A spec object without a `credspec` → 417 from /mutate.
async fn spec_without_credspec_is_417(backend: Backend) {
    let Some(conformance) = Conformance::load("spec_without_credspec_is_417") else {
        return;
    };
    let params = Params::new("cred-spec-without-credspec");
    let mut world = World::new(&conformance, &params, &["credspec-0.yml"], Rbac::Listed);
    // Keep the object, drop its credspec.
    let spec_document = world.documents[0].clone();
    let cut = spec_document.find("credspec:").unwrap();
    world.documents[0] = spec_document[..cut].to_owned();
    world.specs[0].1 = None;
    let running = Running::start(backend, &world, false).await;
    let pod = world.pod(&conformance, "simple-with-gmsa.yml");
    running
        .mutate(&create(&params.namespace, &pod))
        .await
        .assert_denied(
            417,
            &format!(
                "cred spec {} does not have a credspec key",
                params.credspec_names[0]
            ),
        );
    running.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Live only: the fake API server behind LiveCluster, with inline objects

/// The fake API server with the dummy spec and `extra-container-0-cred-spec`, a synced live
/// view of it, and the server on that view.
async fn live_hook(config: Config) -> (FakeApiServer, Hook) {
    let server = FakeApiServer::start("10", vec![fake_api::namespace(NS, "9", &[])], false).await;
    server.gmsa_specs().set_list(
        "30",
        vec![
            fake_api::gmsa_spec(
                CREDSPEC,
                "20",
                serde_json::from_str(DUMMY_CREDSPEC).unwrap(),
            ),
            fake_api::gmsa_spec(
                &extra_credspec_name(0),
                "21",
                serde_json::from_str(&extra_credspec(0)).unwrap(),
            ),
        ],
    );
    let view = live::synced(&server).await;
    let hook = Hook::start_with(Arc::new(view), config).await;
    (server, hook)
}

/// Checks the review the fake received asks exactly upstream's question.
#[track_caller]
fn assert_review_asks(review: &fake_api::ReceivedReview, sa: &str, credspec: &str) {
    assert_eq!(review.namespace, NS);
    let spec = &review.body["spec"];
    assert_eq!(
        spec["user"],
        format!("system:serviceaccount:{NS}:{sa}"),
        "{spec}"
    );
    assert_eq!(
        spec["groups"],
        json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{NS}")
        ]),
        "{spec}"
    );
    let attributes = &spec["resourceAttributes"];
    assert_eq!(attributes["namespace"], NS, "{spec}");
    assert_eq!(attributes["verb"], "use", "{spec}");
    assert_eq!(attributes["group"], "windows.k8s.io", "{spec}");
    assert_eq!(attributes["resource"], "gmsacredentialspecs", "{spec}");
    assert_eq!(attributes["name"], credspec, "{spec}");
    assert!(spec.get("uid").is_none_or(|uid| uid == ""), "{spec}");
    assert!(spec.get("extra").is_none_or(Value::is_null), "{spec}");
}

fn pod_of(sa: &str, name: &str, windows_options: Value) -> Value {
    let mut pod = matrix_pod(Target::Container, windows_options, 0, false);
    pod["metadata"]["name"] = json!(name);
    pod["spec"]["serviceAccountName"] = json!(sa);
    pod
}

/// The four cases every view must get right (allowed, unauthorized with its reason, unknown
/// spec, contents match or not), without ../shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_allowed_unauthorized_unknown_and_contents() {
    let (server, hook) = live_hook(gmsa_config(false, OnError::Deny)).await;
    let authorizer = server.authorizer();

    // Allowed: expanded by /mutate from the watched spec, authorized by a review.
    authorizer.set_answer(SarAnswer::allow("granted by a RoleBinding"));
    let pod = pod_of(SA, "allowed", options(Some(CREDSPEC), None));
    let admitted = hook.admit(NS, &pod).await;
    admitted
        .mutate
        .assert_patched(&[add(&container_path("containers", 0), DUMMY_CONTENTS)]);
    admitted.validate.assert_untouched();
    assert_eq!(authorizer.calls(), 1);
    assert_review_asks(&authorizer.reviews()[0], SA, CREDSPEC);

    // Unauthorized, with the authorizer's reason.
    authorizer.set_answer(SarAnswer::deny("dummy reason"));
    let pod = pod_of(
        "intruder",
        "denied",
        options(Some(CREDSPEC), Some(DUMMY_CONTENTS)),
    );
    hook.validate(&create(NS, &pod))
        .await
        .assert_denied(403, &not_authorized("intruder", CREDSPEC, "dummy reason"));
    assert_review_asks(&authorizer.reviews()[1], "intruder", CREDSPEC);
    // Without a reason.
    authorizer.set_answer(SarAnswer::deny(""));
    let pod = pod_of("quiet", "denied", options(Some(CREDSPEC), None));
    hook.validate(&create(NS, &pod))
        .await
        .assert_denied(403, &not_authorized("quiet", CREDSPEC, ""));
    // An explicit deny wins over allowed.
    authorizer.set_answer(SarAnswer {
        denied: true,
        ..SarAnswer::allow("denied by a webhook authorizer")
    });
    let pod = pod_of("vetoed", "denied", options(Some(CREDSPEC), None));
    hook.validate(&create(NS, &pod)).await.assert_denied(
        403,
        &not_authorized("vetoed", CREDSPEC, "denied by a webhook authorizer"),
    );

    // Unknown spec.
    authorizer.set_answer(SarAnswer::allow(""));
    let pod = pod_of(SA, "unknown", options(Some("i-sure-dont-exist"), None));
    hook.mutate(&create(NS, &pod))
        .await
        .assert_denied(404, "cred spec i-sure-dont-exist does not exist");

    // Contents: reordered is the same; another spec's is not.
    let pod = pod_of(
        SA,
        "reordered",
        options(Some(CREDSPEC), Some(DUMMY_REORDERED)),
    );
    let admitted = hook.admit(NS, &pod).await;
    admitted.mutate.assert_untouched();
    admitted.validate.assert_untouched();
    let pod = pod_of(
        SA,
        "other",
        options(Some(CREDSPEC), Some(&extra_contents(0))),
    );
    hook.validate(&create(NS, &pod))
        .await
        .assert_denied(422, &mismatch("container", CONTAINER, CREDSPEC));
    hook.stop().await;
}

/// With warm caches, a second pod of the same service account using the same spec is admitted
/// without any request to the API server: the spec comes from the watch cache and the
/// authorization from the answer cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_warm_caches_do_not_reach_the_api_server() {
    let (server, hook) = live_hook(gmsa_config(true, OnError::Deny)).await;
    let first = pod_of(SA, "first", options(Some(CREDSPEC), None));
    let admitted = hook.admit(NS, &first).await;
    admitted.validate.assert_untouched();
    assert_eq!(server.authorizer().calls(), 1);

    // Another pod: pod level this time, two references to the same spec.
    let mut second = pod_of(SA, "second", options(Some(CREDSPEC), None));
    second["spec"]["securityContext"] = json!({"windowsOptions": options(Some(CREDSPEC), None)});
    let admitted = hook.admit(NS, &second).await;
    assert_eq!(admitted.mutate.ops.len(), 3, "{}", admitted.mutate.body);
    admitted.validate.assert_untouched();
    assert_eq!(
        server.authorizer().calls(),
        1,
        "the second pod reached the API server"
    );
    // No spec was fetched: the collection saw only the watcher's list and watch (whose
    // requests may still be arriving, so the paths are checked rather than counted; a GET of
    // one spec would have the spec's name in its path).
    assert!(
        server
            .gmsa_specs()
            .requests()
            .iter()
            .all(|r| r.path == "/apis/windows.k8s.io/v1/gmsacredentialspecs"),
        "{:?}",
        server.gmsa_specs().requests()
    );
    hook.stop().await;
}

/// Specs created, changed and deleted in the cluster are seen through the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_spec_changes_follow_the_watch() {
    let (server, hook) = live_hook(gmsa_config(false, OnError::Deny)).await;
    let pod = pod_of(SA, "watched", options(Some("new-spec"), None));
    hook.mutate(&create(NS, &pod))
        .await
        .assert_denied(404, "cred spec new-spec does not exist");

    server
        .gmsa_specs()
        .send_event(
            "ADDED",
            fake_api::gmsa_spec(
                "new-spec",
                "40",
                serde_json::from_str(DUMMY_CREDSPEC).unwrap(),
            ),
        )
        .await;
    let answer = eventually(&hook, &pod, |a| a.allowed()).await;
    answer.assert_patched(&[add(&container_path("containers", 0), DUMMY_CONTENTS)]);

    server
        .gmsa_specs()
        .send_event(
            "MODIFIED",
            fake_api::gmsa_spec(
                "new-spec",
                "41",
                serde_json::from_str(&extra_credspec(0)).unwrap(),
            ),
        )
        .await;
    let answer = eventually(&hook, &pod, |a| {
        a.ops
            .first()
            .is_some_and(|op| op["value"] == extra_contents(0))
    })
    .await;
    answer.assert_patched(&[add(&container_path("containers", 0), &extra_contents(0))]);

    server
        .gmsa_specs()
        .send_event(
            "DELETED",
            fake_api::gmsa_spec(
                "new-spec",
                "42",
                serde_json::from_str(&extra_credspec(0)).unwrap(),
            ),
        )
        .await;
    eventually(&hook, &pod, |a| !a.allowed())
        .await
        .assert_denied(404, "cred spec new-spec does not exist");
    hook.stop().await;
}

/// Sends `pod` to /mutate until `done` holds for the answer (at most [`fake_api::DEADLINE`]).
async fn eventually(hook: &Hook, pod: &Value, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + fake_api::DEADLINE;
    loop {
        let answer = hook.mutate(&create(NS, pod)).await;
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "never reached: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A review the API server never answers: /validate still answers before `?timeout=2s` runs
/// out, per `failure.onError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_hanging_review_is_answered_before_the_deadline() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let (server, hook) = live_hook(gmsa_config(false, on_error)).await;
        server.authorizer().set_answer(SarAnswer {
            hang: true,
            ..SarAnswer::allow("")
        });
        let pod = pod_of(SA, "hanging", options(Some(CREDSPEC), Some(DUMMY_CONTENTS)));
        let started = Instant::now();
        let answer = hook.send("/validate?timeout=2s", &create(NS, &pod)).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(2),
            "answered after {elapsed:?}"
        );
        check_could_not_decide(&answer, on_error, "");
        assert_eq!(server.authorizer().calls(), 1);
        hook.stop().await;
    }
}

/// The API server answers the review with an error: per `failure.onError`, not a 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_review_errors_are_answered_per_on_error() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let (server, hook) = live_hook(gmsa_config(false, on_error)).await;
        server.authorizer().set_answer(SarAnswer::error(500));
        let pod = pod_of(SA, "erroring", options(Some(CREDSPEC), None));
        let answer = hook.validate(&create(NS, &pod)).await;
        check_could_not_decide(&answer, on_error, "error when checking authz access");
        hook.stop().await;
    }
}

/// Spec §3: upstream's review has `resourceAttributes.version: "v1"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_review_names_the_api_version() {
    let (server, hook) = live_hook(gmsa_config(false, OnError::Deny)).await;
    let pod = pod_of(SA, "versioned", options(Some(CREDSPEC), None));
    hook.validate(&create(NS, &pod)).await.assert_untouched();
    let reviews = server.authorizer().reviews();
    assert_eq!(
        reviews[0].body["spec"]["resourceAttributes"]["version"], "v1",
        "{}",
        reviews[0].body
    );
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The live cluster view against the fake API server

mod live {
    use common::fake_api::{DEADLINE, FakeApiServer, gmsa_spec, namespace};
    use kadmit::cluster::LiveCluster;
    use kadmit::cluster::live::client_from_kubeconfig;
    use serde_json::Value;

    use super::World;
    use crate::common;

    /// The fake API server serving a world's specs (and its namespace).
    pub struct Api {
        pub server: FakeApiServer,
    }

    impl Api {
        pub async fn start(world: &World) -> Api {
            let server = FakeApiServer::start(
                "10",
                vec![namespace(&world.params.namespace, "9", &[])],
                false,
            )
            .await;
            server.gmsa_specs().set_list("30", specs(world));
            Api { server }
        }

        /// A live view of the fake, synced.
        pub async fn cluster(&self) -> LiveCluster {
            synced(&self.server).await
        }
    }

    /// A live view of `server`, synced.
    pub async fn synced(server: &FakeApiServer) -> LiveCluster {
        let client = client_from_kubeconfig(Some(server.kubeconfig()))
            .await
            .unwrap();
        let view = LiveCluster::start(client);
        tokio::time::timeout(DEADLINE, view.wait_synced())
            .await
            .expect("the live cluster never synced")
            .unwrap();
        view
    }

    /// The world's specs as the API server lists them (all as `v1`, the storage version, even
    /// credspec-1 created as `v1alpha1`).
    pub fn specs(world: &World) -> Vec<Value> {
        world
            .specs
            .iter()
            .enumerate()
            .map(|(i, (name, credspec))| {
                let mut object = gmsa_spec(
                    name,
                    &(20 + i).to_string(),
                    credspec.clone().unwrap_or_default(),
                );
                if credspec.is_none() {
                    object.as_object_mut().unwrap().remove("credspec");
                }
                object
            })
            .collect()
    }
}
