//! Unit tests of the `image-pull-secrets` policy, run directly on review contexts.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{Value, json};

use super::*;
use crate::cluster::{
    AccessDecision, AccessRequest, ClusterError, ClusterView, GmsaCredentialSpec, Snapshot,
};
use crate::config::Config;
use crate::pod::Pod;
use crate::review::{Review, TypedObject};

fn policy(yaml: &str) -> ImagePullSecrets {
    let config = Config::from_yaml(yaml).unwrap();
    ImagePullSecrets::new(config.image_pull_secrets, config.mutation_summary)
}

/// An AdmissionReview of `operation` on a `kind` object in `namespace`.
fn review_of(
    operation: &str,
    kind: &str,
    sub_resource: Option<&str>,
    namespace: &str,
    object: &Value,
) -> Value {
    let mut request = json!({
        "uid": "u",
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "alice"},
        "object": object,
    });
    if let Some(sub) = sub_resource {
        request["subResource"] = json!(sub);
    }
    if operation == "UPDATE" {
        request["oldObject"] = object.clone();
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn create(namespace: &str, pod: &Value) -> Value {
    review_of("CREATE", "Pod", None, namespace, pod)
}

fn run(
    policy: &ImagePullSecrets,
    review: Value,
    cluster: &dyn ClusterView,
) -> Result<PolicyOutcome, PolicyError> {
    let review = Review::from_value(review).unwrap();
    let request = &review.request;
    let decode = |raw: &Option<Box<serde_json::value::RawValue>>, field| {
        raw.as_ref()
            .and_then(|raw| TypedObject::decode(&request.kind, raw, field).unwrap())
    };
    let object = decode(&request.object, "object");
    let old_object = decode(&request.old_object, "oldObject");
    let ctx = ReviewContext {
        request,
        object: object.as_ref(),
        old_object: old_object.as_ref(),
        cluster,
        deadline: None,
    };
    policy.mutate(&ctx)
}

fn ok(policy: &ImagePullSecrets, review: Value, cluster: &dyn ClusterView) -> PolicyOutcome {
    run(policy, review, cluster).unwrap()
}

fn ops(outcome: &PolicyOutcome) -> Value {
    serde_json::to_value(&outcome.patch).unwrap()
}

/// `pod` with `outcome`'s patch applied, as the API server applies it to what was sent.
fn apply(pod: &Value, outcome: &PolicyOutcome) -> Value {
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &outcome.patch).unwrap();
    let _: Pod = serde_json::from_value(patched.clone()).unwrap();
    patched
}

fn pod(containers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {"containers": containers}
    })
}

fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

/// A cluster view whose namespace and Secret lookups fail; it counts namespace lookups.
#[derive(Default)]
struct Failing {
    namespace_lookups: std::sync::atomic::AtomicUsize,
}

impl ClusterView for Failing {
    fn namespace(&self, _: &str) -> Result<Option<Arc<Namespace>>, ClusterError> {
        self.namespace_lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(ClusterError::NotSynced {
            resource: "namespaces",
        })
    }
    fn pods(&self, _: &str) -> Result<Vec<Arc<k8s_openapi::api::core::v1::Pod>>, ClusterError> {
        Ok(Vec::new())
    }
    fn gmsa_credential_spec(
        &self,
        _: &str,
    ) -> Result<Option<Arc<GmsaCredentialSpec>>, ClusterError> {
        Ok(None)
    }
    fn secret_exists(&self, _: &str, _: &str) -> Result<Option<bool>, ClusterError> {
        Err(ClusterError::Unavailable("secrets unreachable".to_owned()))
    }
    fn authorize(
        &self,
        _: &AccessRequest,
        _: Option<Instant>,
    ) -> Result<AccessDecision, ClusterError> {
        Ok(AccessDecision {
            allowed: true,
            reason: String::new(),
        })
    }
}

const HUB: &str = "
imagePullSecrets:
  rules:
    - images: [docker.io/library/nginx]
      secrets: [hub]
";

#[test]
fn normalized_images_get_the_rule_secrets() {
    let policy = policy(HUB);
    let pod = pod(json!([{"name": "web", "image": "nginx"}]));
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert_eq!(
        ops(&outcome),
        json!([{"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "hub"}]}])
    );
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(
        outcome
            .audit_annotations
            .get("image-pull-secrets")
            .map(String::as_str),
        Some(
            "added imagePullSecrets hub for images docker.io/library/nginx:latest (container web)"
        )
    );
    assert!(outcome.denial.is_none());
    for other in [
        "nginx:1.27",
        "docker.io/library/nginx",
        "index.docker.io/library/nginx:1",
    ] {
        let pod = self::pod(json!([{"name": "web", "image": other}]));
        let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
        assert_eq!(outcome.patch.len(), 1, "{other}");
    }
    for unmatched in ["nginx2", "user/nginx", "quay.io/library/nginx"] {
        let pod = self::pod(json!([{"name": "web", "image": unmatched}]));
        let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
        assert_eq!(outcome, PolicyOutcome::default(), "{unmatched}");
    }
}

#[test]
fn rule_order_secret_order_existing_entries_and_no_duplicates() {
    let policy = policy(
        "
imagePullSecrets:
  rules:
    - images: [reg-b.io/*]
      secrets: [b, shared, b]
    - images: [reg-a.io/*, reg-c.io/*]
      secrets: [a, shared, c]
    - images: [unused.io/*]
      secrets: [never]
",
    );
    // Containers in the opposite order of the rules: the configuration decides the order.
    let mut pod = pod(json!([
        {"name": "first", "image": "reg-a.io/app"},
        {"name": "second", "image": "reg-b.io/app:v2"},
        {"name": "third", "image": "quay.io/other"}
    ]));
    pod["spec"]["imagePullSecrets"] = json!([{"name": "z-own"}, {"name": "a"}, {}, {"name": "a"}]);
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert_eq!(
        ops(&outcome),
        json!([
            {"op": "add", "path": "/spec/imagePullSecrets/4", "value": {"name": "b"}},
            {"op": "add", "path": "/spec/imagePullSecrets/5", "value": {"name": "shared"}},
            {"op": "add", "path": "/spec/imagePullSecrets/6", "value": {"name": "c"}},
        ])
    );
    let patched = apply(&pod, &outcome);
    assert_eq!(
        patched["spec"]["imagePullSecrets"],
        json!([
            {"name": "z-own"}, {"name": "a"}, {}, {"name": "a"},
            {"name": "b"}, {"name": "shared"}, {"name": "c"}
        ])
    );
    assert_eq!(
        outcome.audit_annotations["image-pull-secrets"],
        "added imagePullSecrets b, shared, c for images reg-a.io/app:latest (container first), \
         reg-b.io/app:v2 (container second)"
    );
    // Again: nothing new, so nothing at all.
    let again = ok(&policy, create("team-a", &patched), &Snapshot::empty());
    assert_eq!(again, PolicyOutcome::default());
}

#[test]
fn an_empty_list_is_appended_to() {
    let policy = policy(HUB);
    let mut pod = pod(json!([{"name": "web", "image": "nginx"}]));
    pod["spec"]["imagePullSecrets"] = json!([]);
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert_eq!(
        ops(&outcome),
        json!([{"op": "add", "path": "/spec/imagePullSecrets/0", "value": {"name": "hub"}}])
    );
}

#[test]
fn already_listed_secrets_mean_no_patch() {
    let policy = policy(HUB);
    let mut pod = pod(json!([{"name": "web", "image": "nginx"}]));
    pod["spec"]["imagePullSecrets"] = json!([{"name": "own"}, {"name": "hub"}]);
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert_eq!(outcome, PolicyOutcome::default());
}

#[test]
fn unparsable_and_missing_images_are_warned_not_skipped() {
    let policy = policy(
        "
imagePullSecrets:
  rules:
    - images: ['*']
      secrets: [all]
",
    );
    let mut pod = pod(json!([
        {"name": "bad", "image": "UPPER/case"},
        {"name": "none"},
        {"name": "good", "image": "busybox"}
    ]));
    pod["spec"]["initContainers"] = json!([{"name": "blank", "image": ""}]);
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert_eq!(
        outcome.warnings,
        [
            "kadmit image-pull-secrets: container bad: `UPPER/case` is not a valid image \
             reference: repository name must be lowercase; no imagePullSecrets rule can match \
             it, and the kubelet cannot pull it",
            "kadmit image-pull-secrets: container none has no image; no imagePullSecrets rule \
             can match it",
            "kadmit image-pull-secrets: init container blank has no image; no imagePullSecrets \
             rule can match it",
        ]
    );
    assert!(outcome.denial.is_none());
    assert_eq!(
        ops(&outcome),
        json!([{"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "all"}]}])
    );
    assert_eq!(
        outcome.audit_annotations["image-pull-secrets"],
        "added imagePullSecrets all for images docker.io/library/busybox:latest (container good)"
    );

    // Nothing valid at all: warnings, no patch.
    let pod = self::pod(json!([{"name": "bad", "image": "a b"}]));
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert!(outcome.patch.is_empty());
    assert!(outcome.audit_annotations.is_empty());
    assert_eq!(outcome.warnings.len(), 1);
    assert!(
        outcome.warnings[0].starts_with(
            "kadmit image-pull-secrets: container bad: `a b` is not a valid image reference: "
        ),
        "{:?}",
        outcome.warnings
    );
}

const TWO_SECRETS: &str = "
imagePullSecrets:
  rules:
    - images: [registry.example.com/*]
      secrets: [present, absent]
";

#[test]
fn missing_secrets_are_warned_when_the_view_knows_secrets() {
    let policy = policy(TWO_SECRETS);
    let pod = pod(json!([{"name": "web", "image": "registry.example.com/team/app:v1"}]));
    let mut snapshot = Snapshot::empty();
    snapshot.insert_secret("team-a", "present");
    snapshot.insert_secret("team-b", "absent");
    let outcome = ok(&policy, create("team-a", &pod), &snapshot);
    assert_eq!(
        outcome.warnings,
        [
            "kadmit image-pull-secrets: added pull secret absent does not exist in namespace \
          team-a; the pod's private image pulls will fail (ImagePullBackOff) until it exists"
        ]
    );
    assert_eq!(
        ops(&outcome),
        json!([{"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "present"}, {"name": "absent"}]}])
    );
    // Only secrets this policy adds are checked: one the pod lists itself is its business.
    let mut own = pod.clone();
    own["spec"]["imagePullSecrets"] = json!([{"name": "absent"}, {"name": "own-missing"}]);
    let outcome = ok(&policy, create("team-a", &own), &snapshot);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.patch.len(), 1);
}

#[test]
fn unknown_or_unavailable_secrets_are_not_warned() {
    let policy = policy(TWO_SECRETS);
    let pod = pod(json!([{"name": "web", "image": "registry.example.com/team/app:v1"}]));
    // A snapshot without Secrets does not know.
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.patch.len(), 1);
    // A view that fails on Secrets: the check is advisory, the pod still gets its secrets.
    let failing = Failing::default();
    let outcome = ok(&policy, create("team-a", &pod), &failing);
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.patch.len(), 1);
    // The catch-all rule did not look the namespace up.
    assert_eq!(
        failing
            .namespace_lookups
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn only_pod_creation_is_changed() {
    let policy = policy(HUB);
    let pod = pod(json!([{"name": "web", "image": "nginx"}]));
    let cluster = Snapshot::empty();
    for review in [
        review_of("UPDATE", "Pod", None, "team-a", &pod),
        review_of("CREATE", "Pod", Some("binding"), "team-a", &pod),
        review_of("UPDATE", "Pod", Some("ephemeralcontainers"), "team-a", &pod),
        review_of(
            "CREATE",
            "ConfigMap",
            None,
            "team-a",
            &json!({"metadata": {"name": "c"}}),
        ),
        review_of(
            "CREATE",
            "Namespace",
            None,
            "",
            &json!({"metadata": {"name": "n"}}),
        ),
    ] {
        assert_eq!(
            ok(&policy, review.clone(), &cluster),
            PolicyOutcome::default(),
            "{review}"
        );
    }
    // A CREATE with an empty subresource is a plain CREATE.
    let outcome = ok(
        &policy,
        review_of("CREATE", "Pod", Some(""), "team-a", &pod),
        &cluster,
    );
    assert_eq!(outcome.patch.len(), 1);
}

#[test]
fn namespace_selectors_by_labels_and_expressions() {
    let policy = policy(
        "
imagePullSecrets:
  rules:
    - images: [reg.io/*]
      secrets: [prod]
      namespaceSelector:
        matchLabels: {env: prod}
    - images: [reg.io/*]
      secrets: [not-dev]
      namespaceSelector:
        matchExpressions:
          - {key: env, operator: NotIn, values: [dev]}
    - images: [reg.io/*]
      secrets: [by-name]
      namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: elsewhere}
    - images: [reg.io/*]
      secrets: [labelled]
      namespaceSelector:
        matchExpressions:
          - {key: env, operator: Exists}
",
    );
    let mut snapshot = Snapshot::empty();
    snapshot.insert_namespace(namespace("prod-ns", json!({"env": "prod"})));
    snapshot.insert_namespace(namespace("dev-ns", json!({"env": "dev"})));
    snapshot.insert_namespace(namespace("plain", json!({})));
    let pod = pod(json!([{"name": "web", "image": "reg.io/app:1"}]));
    for (ns, expected) in [
        ("prod-ns", vec!["prod", "not-dev", "labelled"]),
        ("dev-ns", vec!["labelled"]),
        ("plain", vec!["not-dev"]),
        // Not in the snapshot: matched by its name alone.
        ("elsewhere", vec!["not-dev", "by-name"]),
    ] {
        let outcome = ok(&policy, create(ns, &pod), &snapshot);
        let patched = apply(&pod, &outcome);
        let names: Vec<&str> = patched["spec"]["imagePullSecrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "{ns}");
    }
}

#[test]
fn a_cluster_error_on_a_selector_is_a_policy_error() {
    let policy = policy(
        "
imagePullSecrets:
  rules:
    - images: [reg.io/*]
      secrets: [s]
      namespaceSelector:
        matchLabels: {env: prod}
",
    );
    let failing = Failing::default();
    let matched = pod(json!([{"name": "web", "image": "reg.io/app"}]));
    match run(&policy, create("team-a", &matched), &failing) {
        Err(PolicyError::Cluster(ClusterError::NotSynced { resource })) => {
            assert_eq!(resource, "namespaces")
        }
        other => panic!("expected a cluster error, got {other:?}"),
    }
    // A pod whose images no rule matches does not need the namespace at all.
    let unmatched = pod(json!([{"name": "web", "image": "nginx"}]));
    let outcome = ok(&policy, create("team-a", &unmatched), &failing);
    assert_eq!(outcome, PolicyOutcome::default());
    assert_eq!(
        failing
            .namespace_lookups
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn init_and_ephemeral_containers_are_matched() {
    let policy = policy(
        "
imagePullSecrets:
  rules:
    - images: [tools.io/*]
      secrets: [tools]
    - images: [debug.io/*]
      secrets: [debug]
",
    );
    let mut pod = pod(json!([{"name": "web", "image": "nginx"}]));
    pod["spec"]["initContainers"] = json!([{"name": "setup", "image": "tools.io/init:v1"}]);
    pod["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "debug.io/shell"}]);
    let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
    assert_eq!(
        ops(&outcome),
        json!([{"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "tools"}, {"name": "debug"}]}])
    );
    assert_eq!(
        outcome.audit_annotations["image-pull-secrets"],
        "added imagePullSecrets tools, debug for images tools.io/init:v1 (init container setup), \
         debug.io/shell:latest (ephemeral container dbg)"
    );
}

#[test]
fn summaries_follow_the_configuration() {
    let pod = pod(json!([{"name": "web", "image": "nginx"}]));
    let summary =
        "added imagePullSecrets hub for images docker.io/library/nginx:latest (container web)";
    for (mode, warning, annotation) in [
        ("warnings", true, false),
        ("both", true, true),
        ("none", false, false),
        ("auditAnnotations", false, true),
    ] {
        let policy = policy(&format!("mutationSummary: {mode}\n{HUB}"));
        let outcome = ok(&policy, create("team-a", &pod), &Snapshot::empty());
        assert_eq!(outcome.patch.len(), 1, "{mode}");
        let warnings: Vec<String> = if warning {
            vec![format!("kadmit image-pull-secrets: {summary}")]
        } else {
            Vec::new()
        };
        assert_eq!(outcome.warnings, warnings, "{mode}");
        assert_eq!(
            outcome
                .audit_annotations
                .get("image-pull-secrets")
                .map(String::as_str),
            annotation.then_some(summary),
            "{mode}"
        );
    }
}

#[test]
fn warnings_come_in_a_stable_order() {
    let policy = policy(&format!("mutationSummary: warnings\n{TWO_SECRETS}"));
    let pod = pod(json!([
        {"name": "web", "image": "registry.example.com/team/app:v1"},
        {"name": "bad", "image": "Bad"}
    ]));
    let mut snapshot = Snapshot::empty();
    snapshot.insert_secret("other", "x");
    let outcome = ok(&policy, create("team-a", &pod), &snapshot);
    let missing = |secret: &str| {
        format!(
            "kadmit image-pull-secrets: added pull secret {secret} does not exist in namespace \
             team-a; the pod's private image pulls will fail (ImagePullBackOff) until it exists"
        )
    };
    assert_eq!(
        outcome.warnings,
        [
            "kadmit image-pull-secrets: container bad: `Bad` is not a valid image reference: \
             invalid reference format; no imagePullSecrets rule can match it, and the \
             kubelet cannot pull it"
                .to_owned(),
            "kadmit image-pull-secrets: added imagePullSecrets present, absent for images \
             registry.example.com/team/app:v1 (container web)"
                .to_owned(),
            missing("present"),
            missing("absent"),
        ]
    );
}
