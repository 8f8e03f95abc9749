//! `imagePullSecrets` rules (`../shared/spec/resources-and-pull-secrets.md` §4) through the real
//! HTTPS server and a real client.
//!
//! Every answer's patch is decoded and compared op by op, then applied with `json-patch` to the
//! pod as sent (as the API server does); the result must decode as a Kubernetes Pod, and a
//! second `/mutate` of it must return no patch (reinvocation is idempotent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TestOptions, TestServer, post_json};
use k8s_openapi::api::core::v1::Pod;
use kadmit::core::cluster::Snapshot;
use kadmit::core::{ClusterView, Config};
use serde_json::{Value, json};

/// A server with `config` (YAML) and `cluster`, and a client for it.
struct Harness {
    server: TestServer,
    client: reqwest::Client,
    uids: AtomicUsize,
}

impl Harness {
    async fn start(config: &str, cluster: Arc<dyn ClusterView>) -> Harness {
        let server = TestServer::start(TestOptions {
            config: Config::from_yaml(config).unwrap(),
            cluster,
            ..Default::default()
        })
        .await;
        let client = server.client();
        Harness {
            server,
            client,
            uids: AtomicUsize::new(0),
        }
    }

    /// `/mutate` of a CREATE of `pod` in `namespace`, as an AdmissionReview v1.
    async fn mutate(&self, namespace: &str, pod: &Value) -> Answer {
        let uid = format!(
            "0b6e5a52-0000-4000-8000-{:012}",
            self.uids.fetch_add(1, Ordering::SeqCst)
        );
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": pod,
            }
        });
        let (status, body) = post_json(&self.client, &self.server.url("/mutate"), &review).await;
        assert_eq!(status, 200, "{body}");
        Answer::parse(body, &uid)
    }

    /// What the API server does: `/mutate`, apply the patch to the pod as sent, check the
    /// result is a Pod and that a second pass changes nothing. Returns the answer and the pod.
    async fn admit(&self, namespace: &str, pod: &Value) -> (Answer, Value) {
        let answer = self.mutate(namespace, pod).await;
        assert_eq!(answer.body["response"]["allowed"], true, "{}", answer.body);
        let mut patched = pod.clone();
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(answer.ops.clone())).unwrap();
        json_patch::patch(&mut patched, &patch).unwrap();
        let _: Pod = serde_json::from_value(patched.clone()).expect("the patched pod is a Pod");
        let again = self.mutate(namespace, &patched).await;
        assert_eq!(again.body["response"]["allowed"], true, "{}", again.body);
        assert_eq!(again.ops, Vec::<Value>::new(), "second pass patched again");
        (answer, patched)
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// An AdmissionReview v1 answer with its patch decoded.
#[derive(Debug)]
struct Answer {
    body: Value,
    /// The JSON Patch ops; empty when the answer has none.
    ops: Vec<Value>,
}

impl Answer {
    #[track_caller]
    fn parse(body: Value, uid: &str) -> Answer {
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{body}");
        assert_eq!(body["kind"], "AdmissionReview", "{body}");
        let response = &body["response"];
        assert_eq!(response["uid"], uid, "{body}");
        let ops = common::admission::patch_ops(response);
        Answer { body, ops }
    }

    fn warnings(&self) -> Vec<String> {
        match self.body["response"].get("warnings") {
            None => Vec::new(),
            Some(warnings) => serde_json::from_value(warnings.clone()).unwrap(),
        }
    }

    /// The `image-pull-secrets` audit annotation (the API server adds the webhook's prefix).
    fn audit_summary(&self) -> Option<String> {
        let value = self.body["response"]
            .get("auditAnnotations")?
            .get("image-pull-secrets")?;
        Some(value.as_str().unwrap().to_owned())
    }
}

fn pod(containers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"containers": containers}
    })
}

fn add_list(names: &[&str]) -> Vec<Value> {
    let list: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    vec![json!({"op": "add", "path": "/spec/imagePullSecrets", "value": list})]
}

fn dev() -> Arc<dyn ClusterView> {
    Arc::new(Snapshot::dev())
}

#[tokio::test]
async fn images_are_matched_on_their_normalized_reference() {
    let harness = Harness::start(
        "
imagePullSecrets:
  rules:
    - images: [docker.io/library/nginx]
      secrets: [hub-library]
    - images: ['docker.io/user/*']
      secrets: [hub-user]
    - images: ['localhost:5000/*']
      secrets: [local]
    - images: ['reg.io:443/a/*']
      secrets: [reg]
",
        dev(),
    )
    .await;
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let by_digest = format!("reg.io:443/a/b@{digest}");
    for (image, secret, normalized) in [
        (
            "nginx",
            "hub-library",
            "docker.io/library/nginx:latest".to_owned(),
        ),
        (
            "user/app",
            "hub-user",
            "docker.io/user/app:latest".to_owned(),
        ),
        (
            "localhost:5000/a",
            "local",
            "localhost:5000/a:latest".to_owned(),
        ),
        (by_digest.as_str(), "reg", by_digest.clone()),
    ] {
        let pod = pod(json!([{"name": "app", "image": image}]));
        let (answer, patched) = harness.admit("team-a", &pod).await;
        assert_eq!(answer.ops, add_list(&[secret]), "{image}");
        assert_eq!(
            patched["spec"]["imagePullSecrets"],
            json!([{"name": secret}]),
            "{image}"
        );
        assert_eq!(answer.warnings(), Vec::<String>::new(), "{image}");
        assert_eq!(
            answer.audit_summary().as_deref(),
            Some(
                format!("added imagePullSecrets {secret} for images {normalized} (container app)")
                    .as_str()
            ),
            "{image}"
        );
    }
    // Same repository names under other registries or paths match nothing.
    for image in [
        "quay.io/nginx",
        "library/nginx2",
        "localhost:5001/a",
        "reg.io/a/b",
    ] {
        let pod = pod(json!([{"name": "app", "image": image}]));
        let (answer, _) = harness.admit("team-a", &pod).await;
        assert_eq!(answer.ops, Vec::<Value>::new(), "{image}");
        assert_eq!(answer.audit_summary(), None, "{image}");
    }
    harness.stop().await;
}

#[tokio::test]
async fn existing_entries_are_kept_in_order_and_nothing_is_duplicated() {
    let harness = Harness::start(
        "
imagePullSecrets:
  rules:
    - images: ['registry.example.com/*']
      secrets: [regcred, shared]
    - images: ['registry.example.com/team/*', 'quay.io/*']
      secrets: [shared, team, regcred]
",
        dev(),
    )
    .await;
    let mut pod = pod(json!([
        {"name": "web", "image": "registry.example.com/team/app:v1"},
        {"name": "sidecar", "image": "quay.io/proxy:2"}
    ]));
    // The pod's own entries, one of them odd (no name) and one a duplicate: kept as sent.
    pod["spec"]["imagePullSecrets"] =
        json!([{"name": "own"}, {"name": "shared"}, {}, {"name": "own"}]);
    let (answer, patched) = harness.admit("team-a", &pod).await;
    assert_eq!(
        answer.ops,
        vec![
            json!({"op": "add", "path": "/spec/imagePullSecrets/4", "value": {"name": "regcred"}}),
            json!({"op": "add", "path": "/spec/imagePullSecrets/5", "value": {"name": "team"}}),
        ]
    );
    assert_eq!(
        patched["spec"]["imagePullSecrets"],
        json!([
            {"name": "own"}, {"name": "shared"}, {}, {"name": "own"},
            {"name": "regcred"}, {"name": "team"}
        ])
    );
    assert_eq!(
        answer.audit_summary().as_deref(),
        Some(
            "added imagePullSecrets regcred, team for images registry.example.com/team/app:v1 \
             (container web), quay.io/proxy:2 (container sidecar)"
        )
    );

    // Everything already listed: no patch, no summary.
    let mut listed = pod.clone();
    listed["spec"]["imagePullSecrets"] =
        json!([{"name": "team"}, {"name": "shared"}, {"name": "regcred"}]);
    let (answer, _) = harness.admit("team-a", &listed).await;
    assert_eq!(answer.ops, Vec::<Value>::new());
    assert_eq!(answer.audit_summary(), None);
    harness.stop().await;
}

#[tokio::test]
async fn rules_apply_to_the_namespaces_their_selectors_select() {
    let snapshot = Snapshot::parse(
        "
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata: {name: shop-prod, labels: {env: prod, team: shop}}
  - apiVersion: v1
    kind: Namespace
    metadata: {name: shop-dev, labels: {env: dev, team: shop}}
  - apiVersion: v1
    kind: Namespace
    metadata: {name: infra}
",
    )
    .unwrap();
    let harness = Harness::start(
        "
imagePullSecrets:
  rules:
    - images: ['registry.example.com/*']
      secrets: [prod-pull]
      namespaceSelector:
        matchLabels: {env: prod}
    - images: ['registry.example.com/*']
      secrets: [shop-pull]
      namespaceSelector:
        matchExpressions:
          - {key: team, operator: In, values: [shop]}
          - {key: env, operator: NotIn, values: [prod]}
    - images: ['registry.example.com/*']
      secrets: [everyone]
",
        Arc::new(snapshot),
    )
    .await;
    let pod = pod(json!([{"name": "app", "image": "registry.example.com/shop/cart:3"}]));
    for (namespace, expected) in [
        ("shop-prod", &["prod-pull", "everyone"][..]),
        ("shop-dev", &["shop-pull", "everyone"][..]),
        ("infra", &["everyone"][..]),
    ] {
        let (answer, _) = harness.admit(namespace, &pod).await;
        assert_eq!(answer.ops, add_list(expected), "{namespace}");
    }
    harness.stop().await;
}

const REGCRED: &str = "
imagePullSecrets:
  rules:
    - images: ['registry.example.com/*']
      secrets: [regcred, robot]
";

#[tokio::test]
async fn a_missing_secret_is_named_in_a_warning() {
    let snapshot = Snapshot::parse(
        "
apiVersion: v1
kind: Secret
metadata: {name: regcred, namespace: team-a}
type: kubernetes.io/dockerconfigjson
---
apiVersion: v1
kind: Secret
metadata: {name: robot, namespace: team-b}
",
    )
    .unwrap();
    let harness = Harness::start(REGCRED, Arc::new(snapshot)).await;
    let pod = pod(json!([{"name": "app", "image": "registry.example.com/team/app:v1"}]));
    let (answer, _) = harness.admit("team-a", &pod).await;
    assert_eq!(answer.ops, add_list(&["regcred", "robot"]));
    assert_eq!(
        answer.warnings(),
        [
            "kadmit image-pull-secrets: added pull secret robot does not exist in namespace team-a; \
          the pod's private image pulls will fail (ImagePullBackOff) until it exists"
        ]
    );
    let (answer, _) = harness.admit("team-b", &pod).await;
    assert_eq!(
        answer.warnings(),
        [
            "kadmit image-pull-secrets: added pull secret regcred does not exist in namespace \
          team-b; the pod's private image pulls will fail (ImagePullBackOff) until it exists"
        ]
    );
    harness.stop().await;
}

#[tokio::test]
async fn without_secrets_in_the_snapshot_nothing_is_called_missing() {
    let snapshot = Snapshot::parse(
        "
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
",
    )
    .unwrap();
    let harness = Harness::start(REGCRED, Arc::new(snapshot)).await;
    let pod = pod(json!([{"name": "app", "image": "registry.example.com/team/app:v1"}]));
    let (answer, _) = harness.admit("team-a", &pod).await;
    assert_eq!(answer.ops, add_list(&["regcred", "robot"]));
    assert_eq!(answer.warnings(), Vec::<String>::new());
    harness.stop().await;
}

#[tokio::test]
async fn init_and_ephemeral_containers_are_matched_and_summarized_as_warnings() {
    let harness = Harness::start(
        "
mutationSummary: warnings
imagePullSecrets:
  rules:
    - images: ['tools.example.com/*']
      secrets: [tools]
    - images: ['debug.example.com/*']
      secrets: [debug]
",
        dev(),
    )
    .await;
    let mut pod = pod(json!([{"name": "app", "image": "nginx:1.27"}]));
    pod["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "tools.example.com/init:v1"}]);
    pod["spec"]["ephemeralContainers"] =
        json!([{"name": "dbg", "image": "debug.example.com/shell"}]);
    let (answer, patched) = harness.admit("team-a", &pod).await;
    assert_eq!(answer.ops, add_list(&["tools", "debug"]));
    assert_eq!(
        answer.warnings(),
        [
            "kadmit image-pull-secrets: added imagePullSecrets tools, debug for images \
          tools.example.com/init:v1 (init container setup), debug.example.com/shell:latest \
          (ephemeral container dbg)"
        ]
    );
    assert_eq!(answer.audit_summary(), None);
    assert_eq!(
        patched["spec"]["initContainers"],
        pod["spec"]["initContainers"]
    );

    // Only the init container matches: that alone is enough.
    let mut init_only = self::pod(json!([{"name": "app", "image": "nginx"}]));
    init_only["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "tools.example.com/init"}]);
    let (answer, _) = harness.admit("team-a", &init_only).await;
    assert_eq!(answer.ops, add_list(&["tools"]));
    harness.stop().await;
}

#[tokio::test]
async fn an_unparsable_image_is_warned_and_the_pod_is_not_denied() {
    let harness = Harness::start(
        "
imagePullSecrets:
  rules:
    - images: ['*']
      secrets: [all]
",
        dev(),
    )
    .await;
    let pod = pod(json!([
        {"name": "bad", "image": "Registry.Example.com/UPPER/App"},
        {"name": "blank", "image": ""},
        {"name": "good", "image": "busybox"}
    ]));
    let (answer, _) = harness.admit("team-a", &pod).await;
    assert_eq!(answer.ops, add_list(&["all"]));
    let warnings = answer.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "kadmit image-pull-secrets: container bad: `Registry.Example.com/UPPER/App` is not a \
             valid image reference: "
        ) && warnings[0]
            .ends_with("; no imagePullSecrets rule can match it, and the kubelet cannot pull it"),
        "{warnings:?}"
    );
    assert_eq!(
        warnings[1],
        "kadmit image-pull-secrets: container blank has no image; no imagePullSecrets rule can \
         match it"
    );
    harness.stop().await;
}
