//! Default requests and limits (`../shared/spec/resources-and-pull-secrets.md` §1–3) through the
//! real HTTPS server and a real client: LimitRange defaulting with the API server's object
//! defaulting applied to snapshot objects, the annotation LimitRanger writes, cluster-wide
//! rules by namespace selector, and the request-above-limit guard.
//!
//! Every patch is read off the wire (base64 JSON Patch), compared op by op, applied with the
//! `json-patch` crate; the result must decode as a Pod, and a second `/mutate` of it must not
//! patch again (the API server's reinvocation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{TestOptions, TestServer, post_json};
use kadmit::core::Config;
use kadmit::core::cluster::Snapshot;
use serde_json::{Value, json};

const NS: &str = "team";

async fn start(config: &str, cluster: &str) -> TestServer {
    let config = format!("podSecurity: {{enabled: false}}\ngmsa: {{enabled: false}}\n{config}");
    let cluster = format!(
        "kind: Namespace\napiVersion: v1\nmetadata: {{name: {NS}, labels: {{tier: gold}}}}\n---\nkind: Namespace\napiVersion: v1\nmetadata: {{name: other}}\n---\n{cluster}"
    );
    TestServer::start(TestOptions {
        config: Config::from_yaml(&config).unwrap(),
        cluster: Arc::new(Snapshot::parse(&cluster).unwrap()),
        ..TestOptions::default()
    })
    .await
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": NS}, "spec": spec})
}

fn review(operation: &str, namespace: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "6f1c3bde-93c5-4c9b-9d5a-0e3f4f2b8a11",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "name": "web-1",
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": pod,
            "oldObject": if operation == "UPDATE" { pod.clone() } else { Value::Null },
        }
    })
}

/// What `/mutate` answered.
struct Mutated {
    ops: Value,
    patched: Value,
    warnings: Vec<String>,
    audit: Value,
}

async fn mutate_in(server: &TestServer, namespace: &str, pod: &Value) -> Mutated {
    let client = server.client();
    let send = |pod: Value| {
        let client = client.clone();
        let url = server.url("/mutate");
        async move {
            let review = review("CREATE", namespace, &pod);
            let (status, answer) = post_json(&client, &url, &review).await;
            assert_eq!(status, 200, "{answer}");
            let response = answer["response"].clone();
            assert_eq!(response["uid"], review["request"]["uid"]);
            assert_eq!(response["allowed"], true, "{response}");
            response
        }
    };
    let response = send(pod.clone()).await;
    let ops = Value::Array(common::admission::patch_ops(&response));
    let patch: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(patched.clone())
        .expect("the patched object decodes as a Pod");
    let again = send(patched.clone()).await;
    assert!(again.get("patch").is_none(), "second pass patched: {again}");
    let warnings = response["warnings"]
        .as_array()
        .map(|w| w.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    Mutated {
        ops,
        patched,
        warnings,
        audit: response["auditAnnotations"].clone(),
    }
}

async fn mutate(server: &TestServer, pod: &Value) -> Mutated {
    mutate_in(server, NS, pod).await
}

fn limit_range(name: &str, items: &str) -> String {
    format!(
        "kind: LimitRange\napiVersion: v1\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  limits: {items}\n---\n"
    )
}

fn web() -> Value {
    pod(json!({"containers": [{"name": "web", "image": "nginx"}]}))
}

#[tokio::test]
async fn limit_range_max_becomes_default_limit_and_request() {
    let server = start(
        "",
        &limit_range("limits", "[{type: Container, max: {memory: 1Gi}}]"),
    )
    .await;
    let mutated = mutate(&server, &web()).await;
    let annotation =
        "LimitRanger plugin set: memory request for container web; memory limit for container web";
    assert_eq!(
        mutated.ops,
        json!([
            {"op": "add", "path": "/metadata/annotations", "value": {"kubernetes.io/limit-ranger": annotation}},
            {"op": "add", "path": "/spec/containers/0/resources", "value": {"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}}}
        ])
    );
    assert!(mutated.warnings.is_empty());
    assert_eq!(
        mutated.audit,
        json!({"default-resources": "set from LimitRanges: memory request for container web; memory limit for container web"})
    );
}

#[tokio::test]
async fn limit_range_default_becomes_default_request() {
    let server = start(
        "",
        &limit_range("limits", "[{type: Container, default: {cpu: 500m}}]"),
    )
    .await;
    let mutated = mutate(&server, &web()).await;
    assert_eq!(
        mutated.patched["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "500m"}})
    );
}

#[tokio::test]
async fn limit_range_min_becomes_default_request_only() {
    let server = start(
        "",
        &limit_range("limits", "[{type: Container, min: {cpu: 50m}}]"),
    )
    .await;
    let mutated = mutate(&server, &web()).await;
    assert_eq!(
        mutated.patched["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "50m"}})
    );
    assert_eq!(
        mutated.patched["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container web"
    );
}

#[tokio::test]
async fn first_range_wins_and_pod_and_type_pod_items_are_kept() {
    // Ranges apply by name: "a" before "b". A Pod-type item sets no container defaults.
    let ranges = format!(
        "{}{}",
        limit_range(
            "b",
            "[{type: Container, default: {cpu: '2', memory: 2Gi}, defaultRequest: {cpu: '1', memory: 1Gi}}]"
        ),
        limit_range(
            "a",
            "[{type: Pod, max: {cpu: '8'}}, {type: Container, default: {cpu: 500m}, defaultRequest: {cpu: 250m}}]"
        ),
    );
    let server = start("", &ranges).await;
    let mutated = mutate(&server, &web()).await;
    assert_eq!(
        mutated.patched["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "2Gi"}, "requests": {"cpu": "250m", "memory": "1Gi"}})
    );
    assert_eq!(
        mutated.patched["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for container web"
    );
}

#[tokio::test]
async fn init_containers_yes_ephemeral_no_existing_values_kept_and_annotation_order() {
    let server = start(
        "",
        &limit_range(
            "limits",
            "[{type: Container, default: {cpu: 500m, memory: 256Mi}, defaultRequest: {cpu: 100m, memory: 128Mi}}]",
        ),
    )
    .await;
    let mut object = pod(json!({
        "containers": [
            {"name": "web", "image": "nginx", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
            {"name": "sidecar", "image": "envoy", "resources": {"requests": {"memory": "64Mi"}}}
        ],
        "initContainers": [{"name": "migrate", "image": "tool"}],
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
    }));
    object["metadata"]["annotations"] = json!({"team": "payments"});
    let mutated = mutate(&server, &object).await;
    let spec = &mutated.patched["spec"];
    assert_eq!(
        spec["containers"][0]["resources"],
        json!({"limits": {"cpu": "1", "memory": "256Mi"}, "requests": {"cpu": "1", "memory": "128Mi"}})
    );
    assert_eq!(
        spec["containers"][1]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}})
    );
    assert_eq!(
        spec["initContainers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    assert_eq!(
        spec["ephemeralContainers"][0],
        json!({"name": "debug", "image": "busybox"})
    );
    let annotation = "LimitRanger plugin set: memory request for container web; memory limit for container web; cpu request for container sidecar; cpu, memory limit for container sidecar; cpu, memory request for init container migrate; cpu, memory limit for init container migrate";
    assert_eq!(
        mutated.patched["metadata"]["annotations"],
        json!({"team": "payments", "kubernetes.io/limit-ranger": annotation})
    );
    // Into the existing annotations: the key's `/` is escaped as `~1`. Minimal: only the
    // missing leaves of containers that had some resources.
    assert_eq!(
        mutated.ops,
        json!([
            {"op": "add", "path": "/metadata/annotations/kubernetes.io~1limit-ranger", "value": annotation},
            {"op": "add", "path": "/spec/containers/0/resources/limits/memory", "value": "256Mi"},
            {"op": "add", "path": "/spec/containers/0/resources/requests/memory", "value": "128Mi"},
            {"op": "add", "path": "/spec/containers/1/resources/limits", "value": {"cpu": "500m", "memory": "256Mi"}},
            {"op": "add", "path": "/spec/containers/1/resources/requests/cpu", "value": "100m"},
            {"op": "add", "path": "/spec/initContainers/0/resources", "value": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}}
        ])
    );
}

#[tokio::test]
async fn nothing_to_default_means_no_patch_and_updates_are_untouched() {
    let server = start(
        "",
        &limit_range("limits", "[{type: Container, default: {cpu: 500m}}]"),
    )
    .await;
    let complete = pod(json!({"containers": [{"name": "web", "image": "nginx",
        "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]}));
    let mutated = mutate(&server, &complete).await;
    assert_eq!(mutated.ops, json!([]));
    assert!(mutated.audit.is_null(), "{}", mutated.audit);
    // UPDATE: containers' resources are immutable; nothing is defaulted.
    let (status, answer) = post_json(
        &server.client(),
        &server.url("/mutate"),
        &review("UPDATE", NS, &web()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    // Another namespace's LimitRange does not apply.
    let mutated = mutate_in(&server, "other", &web()).await;
    assert_eq!(mutated.ops, json!([]));
}

const RULES: &str = r#"
defaultResources:
  rules:
  - namespaceSelector: {matchLabels: {tier: bronze}}
    default: {cpu: '4'}
  - namespaceSelector:
      matchExpressions: [{key: tier, operator: In, values: [gold, silver]}]
    default: {cpu: '1', memory: 512Mi}
    defaultRequest: {cpu: 250m, memory: 0.25Gi}
  - namespaceSelector: {}
    default: {memory: 128Mi}
"#;

#[tokio::test]
async fn cluster_rules_by_namespace_selector() {
    let server = start(RULES, "").await;
    let mutated = mutate(&server, &web()).await;
    assert_eq!(
        mutated.patched["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "0.25Gi"}})
    );
    assert_eq!(
        mutated.patched["metadata"]["annotations"]["kadmit.io/defaulted-resources"],
        "kadmit defaultResources.rules[1] set: cpu, memory request for container web; cpu, memory limit for container web"
    );
    // `other` has no tier label: only the catch-all rule applies (its limit defaults the
    // request too, as the API server would).
    let mutated = mutate_in(&server, "other", &web()).await;
    assert_eq!(
        mutated.patched["spec"]["containers"][0]["resources"],
        json!({"limits": {"memory": "128Mi"}, "requests": {"memory": "128Mi"}})
    );
    // A namespace missing from the snapshot is matched by its name label alone.
    let server = start(
        "defaultResources:\n  rules:\n  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ghost}}\n    default: {cpu: '3'}\n",
        "",
    )
    .await;
    let mutated = mutate_in(&server, "ghost", &web()).await;
    assert_eq!(
        mutated.patched["spec"]["containers"][0]["resources"]["limits"],
        json!({"cpu": "3"})
    );
}

#[tokio::test]
async fn namespace_limit_range_overrides_the_cluster_rule() {
    let server = start(
        RULES,
        &limit_range("limits", "[{type: Container, default: {cpu: 300m}}]"),
    )
    .await;
    let mutated = mutate(&server, &web()).await;
    assert_eq!(
        mutated.patched["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "300m", "memory": "512Mi"}, "requests": {"cpu": "300m", "memory": "0.25Gi"}})
    );
    let annotations = &mutated.patched["metadata"]["annotations"];
    assert_eq!(
        annotations["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container web; cpu limit for container web"
    );
    assert_eq!(
        annotations["kadmit.io/defaulted-resources"],
        "kadmit defaultResources.rules[1] set: memory request for container web; memory limit for container web"
    );
    assert_eq!(
        mutated.audit["default-resources"],
        "set from LimitRanges: cpu request for container web; cpu limit for container web; and from defaultResources.rules[1]: memory request for container web; memory limit for container web"
    );
}

#[tokio::test]
async fn request_above_limit_is_never_produced() {
    let server = start(
        "mutationSummary: warnings\n",
        &limit_range(
            "limits",
            "[{type: Container, default: {cpu: 500m, memory: 1Gi}, defaultRequest: {cpu: 100m, memory: 256Mi}}]",
        ),
    )
    .await;
    let object = pod(json!({"containers": [
        {"name": "big", "image": "a", "resources": {"requests": {"cpu": "2", "memory": "1024Mi"}}},
        {"name": "capped", "image": "b", "resources": {"limits": {"memory": "128Mi"}}}
    ]}));
    let mutated = mutate(&server, &object).await;
    let containers = &mutated.patched["spec"]["containers"];
    // 1024Mi is 1Gi by value, not above it: that limit is set. 2 CPUs are above 500m: not.
    assert_eq!(
        containers[0]["resources"],
        json!({"limits": {"memory": "1Gi"}, "requests": {"cpu": "2", "memory": "1024Mi"}})
    );
    assert_eq!(
        containers[1]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        mutated.warnings,
        [
            "kadmit default-resources: container big: the default cpu limit 500m from LimitRange team/limits was not set: it is below the container's request 2, and a request above its limit makes the pod invalid",
            "kadmit default-resources: container capped: the default memory request 256Mi from LimitRange team/limits was not set: it is above the container's limit 128Mi, and a request above its limit makes the pod invalid",
            "kadmit default-resources: set from LimitRanges: memory limit for container big; cpu request for container capped; cpu limit for container capped",
        ]
    );
}
