//! `securityDefaults` (the `security-defaults` policy) through the real HTTPS server and a real
//! client: each default applied (the decoded JSON Patch compared whole), each case where it must
//! not apply (explicit values of each kind, privileged and `SYS_ADMIN` containers, Windows pods,
//! the legacy seccomp annotation, a namespace the selector leaves out, UPDATE, the policy off by
//! default), and the defaults together with Pod Security `restricted`.
//!
//! Every patch is applied with the `json-patch` crate, the result decoded as a k8s-openapi Pod
//! and sent to /mutate again, which must not patch it a second time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TestOptions, TestServer, post_json};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kadmit::core::Config;
use kadmit::core::cluster::Snapshot;
use serde_json::{Value, json};

/// The namespace the tests' selector selects (`team: a`).
const SELECTED: &str = "apps";
/// A namespace the selector leaves out (`team: b`).
const LEFT_OUT: &str = "other";
/// A selected namespace where Pod Security enforces `restricted`.
const RESTRICTED_NS: &str = "locked";

/// Every default on, for namespaces labelled `team: a`; Pod Security off so that only the
/// defaults speak.
const ALL_ON: &str = r#"
podSecurity:
  enabled: false
securityDefaults:
  enabled: true
  seccompProfile: RuntimeDefault
  allowPrivilegeEscalation: false
  dropAllCapabilities: true
  namespaceSelector:
    matchLabels:
      team: a
"#;

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml).unwrap()
}

fn namespace(name: &str, labels: Value) -> Namespace {
    let mut labels = labels;
    labels["kubernetes.io/metadata.name"] = json!(name);
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn cluster() -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.insert_namespace(namespace(SELECTED, json!({"team": "a"})));
    snapshot.insert_namespace(namespace(LEFT_OUT, json!({"team": "b"})));
    snapshot.insert_namespace(namespace(
        RESTRICTED_NS,
        json!({"team": "a", "pod-security.kubernetes.io/enforce": "restricted"}),
    ));
    snapshot
}

fn pod(namespace: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": spec
    })
}

/// A pod with one container and nothing security-related set.
fn bare_pod(namespace: &str) -> Value {
    pod(
        namespace,
        json!({"containers": [{"name": "app", "image": "nginx"}]}),
    )
}

const POD_KIND: &str = r#"{"group": "", "version": "v1", "kind": "Pod"}"#;
const PODS: &str = r#"{"group": "", "version": "v1", "resource": "pods"}"#;

/// A pod CREATE request.
fn create(pod: &Value) -> Value {
    json!({
        "kind": serde_json::from_str::<Value>(POD_KIND).unwrap(),
        "resource": serde_json::from_str::<Value>(PODS).unwrap(),
        "namespace": pod["metadata"]["namespace"],
        "name": pod["metadata"]["name"],
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": pod,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
    })
}

/// A pod UPDATE request, from `old` to `new`.
fn update(old: &Value, new: &Value) -> Value {
    json!({
        "kind": serde_json::from_str::<Value>(POD_KIND).unwrap(),
        "resource": serde_json::from_str::<Value>(PODS).unwrap(),
        "namespace": new["metadata"]["namespace"],
        "name": new["metadata"]["name"],
        "operation": "UPDATE",
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": new,
        "oldObject": old,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
    })
}

/// `pod` with the JSON Patch `ops` applied, decoded as a k8s-openapi Pod (the API server would
/// reject a patch that does not give a valid pod) and encoded again.
#[track_caller]
fn apply(pod: &Value, ops: &[Value]) -> Value {
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec())).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let typed: Pod = serde_json::from_value(patched).unwrap();
    serde_json::to_value(&typed).unwrap()
}

struct Hook {
    server: TestServer,
    client: reqwest::Client,
    uids: AtomicUsize,
}

impl Hook {
    async fn start(config: Config) -> Hook {
        let server = TestServer::start(TestOptions {
            config,
            cluster: Arc::new(cluster()),
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

    async fn send(&self, path: &str, request: &Value) -> Answer {
        let uid = format!(
            "5ec0de7a-0000-4000-8000-{:012}",
            self.uids.fetch_add(1, Ordering::SeqCst)
        );
        let mut request = request.clone();
        request["uid"] = json!(uid);
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        let (status, body) = post_json(&self.client, &self.server.url(path), &review).await;
        assert_eq!(status, 200, "{path}: {body}");
        Answer::parse(body, &uid)
    }

    async fn mutate(&self, request: &Value) -> Answer {
        self.send("/mutate", request).await
    }

    async fn validate(&self, request: &Value) -> Answer {
        self.send("/validate", request).await
    }

    /// Creates `pod` through /mutate: expects exactly `ops` (none: no patch at all), applies
    /// them and checks a second /mutate pass over the result patches nothing. Returns the first
    /// answer and the patched pod.
    async fn create(&self, pod: &Value, ops: &[Value]) -> (Answer, Value) {
        let answer = self.mutate(&create(pod)).await;
        assert!(answer.allowed(), "{}", answer.body);
        assert_eq!(answer.ops, ops, "{}", answer.body);
        let patched = apply(pod, &answer.ops);
        let again = self.mutate(&create(&patched)).await;
        assert!(again.allowed(), "{}", again.body);
        assert_eq!(
            again.ops,
            Vec::<Value>::new(),
            "second /mutate pass patched again: {}",
            again.body
        );
        (answer, patched)
    }

    /// Creates `pod` and expects it untouched: no patch, no summary.
    async fn untouched(&self, pod: &Value) {
        let (answer, _) = self.create(pod, &[]).await;
        assert_eq!(answer.summary(), None, "{}", answer.body);
        assert_eq!(answer.warnings(), Vec::<String>::new(), "{}", answer.body);
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// An AdmissionReview answer, with its patch decoded.
#[derive(Debug)]
struct Answer {
    body: Value,
    /// The JSON Patch ops; empty when the answer has no patch.
    ops: Vec<Value>,
}

impl Answer {
    #[track_caller]
    fn parse(body: Value, uid: &str) -> Answer {
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{body}");
        assert_eq!(body["kind"], "AdmissionReview", "{body}");
        let response = &body["response"];
        assert_eq!(response["uid"], uid, "uid not echoed: {body}");
        let ops = common::admission::patch_ops(response);
        Answer { body, ops }
    }

    fn allowed(&self) -> bool {
        self.body["response"]["allowed"] == true
    }

    /// The `security-defaults` audit annotation.
    fn summary(&self) -> Option<&str> {
        self.body["response"]["auditAnnotations"]["security-defaults"].as_str()
    }

    fn warnings(&self) -> Vec<String> {
        self.body["response"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    }

    fn message(&self) -> &str {
        self.body["response"]["status"]["message"]
            .as_str()
            .unwrap_or("")
    }
}

fn add(path: &str, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

fn runtime_default() -> Value {
    json!({"seccompProfile": {"type": "RuntimeDefault"}})
}

// ---------------------------------------------------------------------------------------------
// Each default applied

#[tokio::test]
async fn every_default_on_a_bare_pod() {
    let hook = Hook::start(config(ALL_ON)).await;
    let (answer, patched) = hook
        .create(
            &bare_pod(SELECTED),
            &[
                add(
                    "/spec/containers/0/securityContext",
                    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
                ),
                add("/spec/securityContext", runtime_default()),
            ],
        )
        .await;
    assert_eq!(
        answer.summary(),
        Some(
            "set seccompProfile RuntimeDefault for the pod; allowPrivilegeEscalation false for container app; capabilities.drop [ALL] for container app"
        )
    );
    // The default `mutationSummary` is the audit annotation only.
    assert_eq!(answer.warnings(), Vec::<String>::new());
    assert_eq!(patched["spec"]["containers"][0]["image"], "nginx");
    hook.stop().await;
}

#[tokio::test]
async fn each_default_alone() {
    // Only `line` of the three settings on; the other two off.
    let only = |line: &str| {
        let off = [
            "seccompProfile: null",
            "allowPrivilegeEscalation: null",
            "dropAllCapabilities: false",
        ];
        let settings: Vec<&str> = off
            .iter()
            .map(|o| {
                if o.split(':').next() == line.split(':').next() {
                    line
                } else {
                    o
                }
            })
            .collect();
        config(&format!(
            "podSecurity: {{enabled: false}}\nsecurityDefaults:\n  enabled: true\n  {}\n",
            settings.join("\n  ")
        ))
    };
    let cases = [
        (
            "seccompProfile: RuntimeDefault",
            add("/spec/securityContext", runtime_default()),
            "set seccompProfile RuntimeDefault for the pod",
        ),
        (
            "allowPrivilegeEscalation: false",
            add(
                "/spec/containers/0/securityContext",
                json!({"allowPrivilegeEscalation": false}),
            ),
            "set allowPrivilegeEscalation false for container app",
        ),
        (
            "dropAllCapabilities: true",
            add(
                "/spec/containers/0/securityContext",
                json!({"capabilities": {"drop": ["ALL"]}}),
            ),
            "set capabilities.drop [ALL] for container app",
        ),
    ];
    for (line, op, summary) in cases {
        let hook = Hook::start(only(line)).await;
        let (answer, _) = hook.create(&bare_pod(SELECTED), &[op]).await;
        assert_eq!(answer.summary(), Some(summary), "{line}");
        hook.stop().await;
    }
}

#[tokio::test]
async fn every_container_list_and_existing_contexts() {
    let hook = Hook::start(config(&format!("{ALL_ON}mutationSummary: both\n"))).await;
    let object = pod(
        SELECTED,
        json!({
            "securityContext": {"runAsNonRoot": true},
            "initContainers": [{"name": "setup", "image": "busybox", "securityContext": {"runAsUser": 1000}}],
            "containers": [
                {"name": "app", "image": "nginx", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}},
                {"name": "sidecar", "image": "envoy", "securityContext": {"capabilities": {"drop": []}}}
            ],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
        }),
    );
    let (answer, patched) = hook
        .create(
            &object,
            &[
                add(
                    "/spec/containers/0/securityContext/allowPrivilegeEscalation",
                    json!(false),
                ),
                add(
                    "/spec/containers/0/securityContext/capabilities/drop",
                    json!(["ALL"]),
                ),
                add(
                    "/spec/containers/1/securityContext/allowPrivilegeEscalation",
                    json!(false),
                ),
                add(
                    "/spec/containers/1/securityContext/capabilities/drop/0",
                    json!("ALL"),
                ),
                add(
                    "/spec/ephemeralContainers/0/securityContext",
                    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
                ),
                add(
                    "/spec/initContainers/0/securityContext/allowPrivilegeEscalation",
                    json!(false),
                ),
                add(
                    "/spec/initContainers/0/securityContext/capabilities",
                    json!({"drop": ["ALL"]}),
                ),
                add(
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "RuntimeDefault"}),
                ),
            ],
        )
        .await;
    let summary = "set seccompProfile RuntimeDefault for the pod; \
        allowPrivilegeEscalation false for container app, container sidecar, init container setup, ephemeral container debug; \
        capabilities.drop [ALL] for container app, container sidecar, init container setup, ephemeral container debug";
    assert_eq!(answer.summary(), Some(summary));
    assert_eq!(
        answer.warnings(),
        [format!("kadmit security-defaults: {summary}")]
    );
    // What was there is kept.
    let containers = &patched["spec"]["containers"];
    assert_eq!(
        containers[0]["securityContext"]["capabilities"]["add"],
        json!(["NET_BIND_SERVICE"])
    );
    assert_eq!(
        patched["spec"]["initContainers"][0]["securityContext"]["runAsUser"],
        1000
    );
    assert_eq!(patched["spec"]["securityContext"]["runAsNonRoot"], true);
    hook.stop().await;
}

#[tokio::test]
async fn seccomp_covers_only_containers_without_a_profile() {
    let hook = Hook::start(config(ALL_ON)).await;
    // One container has its own profile: the pod level is set for the other, which is what
    // "neither pod nor container" asks, and the first keeps its own.
    let object = pod(
        SELECTED,
        json!({"containers": [
            {"name": "a", "image": "nginx", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/a.json"}}},
            {"name": "b", "image": "nginx", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}
        ]}),
    );
    let (answer, patched) = hook
        .create(&object, &[add("/spec/securityContext", runtime_default())])
        .await;
    assert_eq!(
        answer.summary(),
        Some("set seccompProfile RuntimeDefault for the pod")
    );
    assert_eq!(
        patched["spec"]["containers"][0]["securityContext"]["seccompProfile"]["type"],
        "Localhost"
    );
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Where the defaults must not apply

/// A container context with every setting explicit.
fn explicit_context(escalation: bool, drop: &[&str], profile: &str) -> Value {
    json!({
        "allowPrivilegeEscalation": escalation,
        "capabilities": {"drop": drop},
        "seccompProfile": {"type": profile}
    })
}

#[tokio::test]
async fn explicit_values_are_never_overridden() {
    let hook = Hook::start(config(ALL_ON)).await;
    // Each kind of explicit value, including the ones restricted rejects.
    for sc in [
        explicit_context(true, &["NET_RAW"], "Unconfined"),
        explicit_context(false, &["ALL"], "RuntimeDefault"),
        explicit_context(true, &["ALL"], "Localhost"),
    ] {
        let object = pod(
            SELECTED,
            json!({"containers": [{"name": "app", "image": "nginx", "securityContext": sc}]}),
        );
        hook.untouched(&object).await;
    }
    // An explicit pod-level profile, even Unconfined, is kept; the rest is still defaulted.
    let object = pod(
        SELECTED,
        json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
               "containers": [{"name": "app", "image": "nginx"}]}),
    );
    let (answer, _) = hook
        .create(
            &object,
            &[add(
                "/spec/containers/0/securityContext",
                json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
            )],
        )
        .await;
    assert_eq!(
        answer.summary(),
        Some(
            "set allowPrivilegeEscalation false for container app; capabilities.drop [ALL] for container app"
        )
    );
    // Each explicit field alone: only the others are set.
    let alone = [
        (
            json!({"allowPrivilegeEscalation": true}),
            add(
                "/spec/containers/0/securityContext/capabilities",
                json!({"drop": ["ALL"]}),
            ),
        ),
        (
            json!({"capabilities": {"drop": ["NET_RAW"]}}),
            add(
                "/spec/containers/0/securityContext/allowPrivilegeEscalation",
                json!(false),
            ),
        ),
    ];
    for (sc, op) in alone {
        let object = pod(
            SELECTED,
            json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                   "containers": [{"name": "app", "image": "nginx", "securityContext": sc}]}),
        );
        hook.create(&object, &[op]).await;
    }
    hook.stop().await;
}

#[tokio::test]
async fn privileged_and_sys_admin_containers_keep_escalation_unset() {
    let hook = Hook::start(config(ALL_ON)).await;
    for sc in [
        json!({"privileged": true}),
        json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
        json!({"capabilities": {"add": ["NET_ADMIN", "CAP_SYS_ADMIN"]}}),
    ] {
        let object = pod(
            SELECTED,
            json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                   "containers": [{"name": "app", "image": "nginx", "securityContext": sc}]}),
        );
        let answer = hook.mutate(&create(&object)).await;
        assert!(answer.allowed(), "{}", answer.body);
        // Only capabilities.drop may be added; allowPrivilegeEscalation never.
        assert!(
            answer
                .ops
                .iter()
                .all(|op| !op.to_string().contains("allowPrivilegeEscalation")),
            "{sc}: {:?}",
            answer.ops
        );
        assert_eq!(
            answer.summary(),
            Some("set capabilities.drop [ALL] for container app"),
            "{sc}"
        );
    }
    // With dropping off, such a pod is not touched at all.
    let hook_without_drop = Hook::start(config(
        &ALL_ON.replace("dropAllCapabilities: true", "dropAllCapabilities: false"),
    ))
    .await;
    let object = pod(
        SELECTED,
        json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
               "containers": [{"name": "app", "image": "nginx", "securityContext": {"privileged": true}}]}),
    );
    hook_without_drop.untouched(&object).await;
    hook_without_drop.stop().await;
    hook.stop().await;
}

#[tokio::test]
async fn windows_pods_get_nothing() {
    let hook = Hook::start(config(ALL_ON)).await;
    let windows = pod(
        SELECTED,
        json!({"os": {"name": "windows"}, "containers": [{"name": "app", "image": "iis"}]}),
    );
    hook.untouched(&windows).await;
    let host_process = pod(
        SELECTED,
        json!({
            "hostNetwork": true,
            "securityContext": {"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}},
            "containers": [{"name": "app", "image": "agent"}]
        }),
    );
    hook.untouched(&host_process).await;
    let container_host_process = pod(
        SELECTED,
        json!({
            "hostNetwork": true,
            "containers": [{"name": "app", "image": "agent", "securityContext": {"windowsOptions": {"hostProcess": true}}}]
        }),
    );
    hook.untouched(&container_host_process).await;
    hook.stop().await;
}

#[tokio::test]
async fn legacy_seccomp_annotations_keep_the_pod_profile_unset() {
    let hook = Hook::start(config(
        &ALL_ON
            .replace(
                "allowPrivilegeEscalation: false",
                "allowPrivilegeEscalation: null",
            )
            .replace("dropAllCapabilities: true", "dropAllCapabilities: false"),
    ))
    .await;
    for (key, value) in [
        (
            "seccomp.security.alpha.kubernetes.io/pod",
            "runtime/default",
        ),
        (
            "container.seccomp.security.alpha.kubernetes.io/app",
            "localhost/profile.json",
        ),
    ] {
        let mut object = bare_pod(SELECTED);
        object["metadata"]["annotations"] = json!({key: value});
        hook.untouched(&object).await;
    }
    hook.stop().await;
}

#[tokio::test]
async fn only_selected_namespaces() {
    let hook = Hook::start(config(ALL_ON)).await;
    hook.untouched(&bare_pod(LEFT_OUT)).await;
    // A namespace the cluster view does not know is matched by its name only: `team: a` does
    // not select it.
    hook.untouched(&bare_pod("unknown")).await;
    hook.stop().await;
}

#[tokio::test]
async fn updates_are_not_changed() {
    let hook = Hook::start(config(ALL_ON)).await;
    let old = bare_pod(SELECTED);
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"app": "web"});
    let answer = hook.mutate(&update(&old, &new)).await;
    assert!(answer.allowed(), "{}", answer.body);
    assert_eq!(answer.ops, Vec::<Value>::new(), "{}", answer.body);
    assert_eq!(answer.summary(), None, "{}", answer.body);
    hook.stop().await;
}

#[tokio::test]
async fn off_by_default() {
    assert!(!Config::default().security_defaults.enabled);
    let hook = Hook::start(Config::default()).await;
    hook.untouched(&bare_pod(SELECTED)).await;
    hook.stop().await;
    // Enabled without the selector: every namespace.
    let hook = Hook::start(config("securityDefaults: {enabled: true}\n")).await;
    let (answer, _) = hook
        .create(
            &bare_pod(LEFT_OUT),
            &[
                add(
                    "/spec/containers/0/securityContext",
                    json!({"allowPrivilegeEscalation": false}),
                ),
                add("/spec/securityContext", runtime_default()),
            ],
        )
        .await;
    assert_eq!(
        answer.summary(),
        Some(
            "set seccompProfile RuntimeDefault for the pod; allowPrivilegeEscalation false for container app"
        )
    );
    hook.stop().await;
}

// ---------------------------------------------------------------------------------------------
// With Pod Security

#[tokio::test]
async fn defaulted_pod_passes_restricted() {
    let hook = Hook::start(config(
        "securityDefaults:\n  enabled: true\n  dropAllCapabilities: true\n",
    ))
    .await;
    let object = pod(
        RESTRICTED_NS,
        json!({"securityContext": {"runAsNonRoot": true},
               "containers": [{"name": "app", "image": "nginx"}]}),
    );
    let denied = hook.validate(&create(&object)).await;
    assert!(!denied.allowed(), "{}", denied.body);
    assert!(
        denied.message().contains("seccompProfile")
            && denied.message().contains("allowPrivilegeEscalation")
            && denied.message().contains("unrestricted capabilities"),
        "{}",
        denied.body
    );
    let (_, patched) = hook
        .create(
            &object,
            &[
                add(
                    "/spec/containers/0/securityContext",
                    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
                ),
                add(
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "RuntimeDefault"}),
                ),
            ],
        )
        .await;
    let allowed = hook.validate(&create(&patched)).await;
    assert!(allowed.allowed(), "{}", allowed.body);
    assert_eq!(allowed.warnings(), Vec::<String>::new(), "{}", allowed.body);
    hook.stop().await;
}
