//! Properties of the combined `/mutate` patch over generated pods, with every defaulting policy
//! on (default resources from a LimitRange and a rule, pull secrets by image rule, security
//! defaults):
//!
//! - the patch applies cleanly (json-patch crate) to the object as sent, and the result decodes
//!   as a Pod;
//! - it only adds, never replaces or removes, and only at the fields the policies own, each
//!   target absent before: nothing else in the object changes, fields kadmit does not model
//!   included;
//! - a second pass over the patched object produces no patch (the API server's reinvocation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use json_patch::PatchOperation;
use kadmit_core::cluster::Snapshot;
use kadmit_core::{Config, Endpoint, Pipeline, Review};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CONFIG: &str = r#"
podSecurity: {enabled: false}
gmsa: {enabled: false}
defaultResources:
  rules:
  - namespaceSelector: {matchLabels: {tier: gold}}
    default: {cpu: 750m, memory: 512Mi, ephemeral-storage: 2Gi}
    defaultRequest: {cpu: 250m, memory: 256Mi}
imagePullSecrets:
  rules:
  - images: ["registry.example.com/*"]
    secrets: [regcred, shared]
  - images: ["docker.io/library/*", "localhost:5000/*"]
    secrets: [hub, shared]
securityDefaults:
  enabled: true
  dropAllCapabilities: true
"#;

const CLUSTER: &str = r#"
kind: Namespace
apiVersion: v1
metadata: {name: team, labels: {tier: gold}}
---
kind: LimitRange
apiVersion: v1
metadata: {name: limits, namespace: team}
spec:
  limits:
  - {type: Container, max: {memory: 1Gi}, default: {cpu: 500m}, min: {cpu: 10m}}
---
kind: Secret
apiVersion: v1
metadata: {name: regcred, namespace: team}
"#;

fn quantity() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("100m")),
        Just(json!("2")),
        Just(json!("0.5")),
        Just(json!("128Mi")),
        Just(json!("1Gi")),
        Just(json!("3Gi")),
        Just(json!(1)),
    ]
}

fn resource_list() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(proptest::collection::btree_map(
        prop_oneof![
            Just("cpu".to_owned()),
            Just("memory".to_owned()),
            Just("ephemeral-storage".to_owned())
        ],
        quantity(),
        0..3,
    ))
    .prop_map(|map| map.map(|m| Value::Object(m.into_iter().collect())))
}

fn image() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("nginx")),
        Just(json!("nginx:1.27")),
        Just(json!("registry.example.com/team/app:v1")),
        Just(json!("localhost:5000/a")),
        Just(json!(
            "quay.io/org/tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        )),
        Just(json!("user/app")),
        Just(json!("Not A Reference")),
    ]
}

fn security_context() -> impl Strategy<Value = Option<Value>> {
    let capabilities = (
        proptest::option::of(proptest::collection::vec(
            prop_oneof![
                Just("NET_BIND_SERVICE"),
                Just("SYS_ADMIN"),
                Just("CAP_SYS_ADMIN")
            ],
            0..2,
        )),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![Just("ALL"), Just("NET_RAW")],
            0..2,
        )),
    );
    proptest::option::of((
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(capabilities),
        proptest::option::of(prop_oneof![Just("RuntimeDefault"), Just("Unconfined")]),
        any::<bool>(),
    ))
    .prop_map(|context| {
        context.map(
            |(privileged, escalation, capabilities, seccomp, run_as_non_root)| {
                let mut sc = Map::new();
                if let Some(p) = privileged {
                    sc.insert("privileged".into(), json!(p));
                }
                if let Some(e) = escalation {
                    sc.insert("allowPrivilegeEscalation".into(), json!(e));
                }
                if let Some((add, drop)) = capabilities {
                    let mut caps = Map::new();
                    if let Some(add) = add {
                        caps.insert("add".into(), json!(add));
                    }
                    if let Some(drop) = drop {
                        caps.insert("drop".into(), json!(drop));
                    }
                    sc.insert("capabilities".into(), Value::Object(caps));
                }
                if let Some(t) = seccomp {
                    sc.insert("seccompProfile".into(), json!({"type": t}));
                }
                if run_as_non_root {
                    sc.insert("runAsNonRoot".into(), json!(true));
                }
                Value::Object(sc)
            },
        )
    })
}

fn container(prefix: &'static str) -> impl Strategy<Value = (String, Value)> {
    (
        image(),
        resource_list(),
        resource_list(),
        security_context(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            move |(image, requests, limits, sc, empty_resources, unknown)| {
                let mut c = Map::new();
                c.insert("image".into(), image);
                let mut resources = Map::new();
                if let Some(r) = requests {
                    resources.insert("requests".into(), r);
                }
                if let Some(l) = limits {
                    resources.insert("limits".into(), l);
                }
                if !resources.is_empty() || empty_resources {
                    c.insert("resources".into(), Value::Object(resources));
                }
                if let Some(sc) = sc {
                    c.insert("securityContext".into(), sc);
                }
                if unknown {
                    // A field no Kubernetes version has: it must survive untouched.
                    c.insert("x-kadmit-unknown".into(), json!({"kept": [1, 2]}));
                }
                (prefix.to_owned(), Value::Object(c))
            },
        )
}

fn pod() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(container("app"), 1..4),
        proptest::collection::vec(container("init"), 0..3),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![Just("hub"), Just("mine"), Just("shared"), Just("")],
            0..3,
        )),
        proptest::option::of(prop_oneof![
            Just(json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}})),
            Just(json!({"runAsNonRoot": true})),
            Just(json!({})),
        ]),
        proptest::option::of(prop_oneof![
            Just(json!({})),
            Just(json!({"team": "a/b", "kubernetes.io/limit-ranger": "old"}))
        ]),
        any::<bool>(),
    )
        .prop_map(
            |(containers, inits, pull_secrets, pod_sc, annotations, windows)| {
                let name = |list: Vec<(String, Value)>| {
                    list.into_iter()
                        .enumerate()
                        .map(|(i, (prefix, mut c))| {
                            c["name"] = json!(format!("{prefix}-{i}"));
                            c
                        })
                        .collect::<Vec<_>>()
                };
                let mut spec = Map::new();
                spec.insert("containers".into(), json!(name(containers)));
                if !inits.is_empty() {
                    spec.insert("initContainers".into(), json!(name(inits)));
                }
                if let Some(secrets) = pull_secrets {
                    let entries: Vec<Value> = secrets.iter().map(|s| json!({"name": s})).collect();
                    spec.insert("imagePullSecrets".into(), json!(entries));
                }
                if let Some(sc) = pod_sc {
                    spec.insert("securityContext".into(), sc);
                }
                if windows {
                    spec.insert("os".into(), json!({"name": "windows"}));
                }
                spec.insert("x-kadmit-unknown".into(), json!("kept"));
                let mut metadata = json!({"name": "p", "namespace": "team"});
                if let Some(a) = annotations {
                    metadata["annotations"] = a;
                }
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": Value::Object(spec)})
            },
        )
}

fn create(object: &Value) -> Review {
    Review::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "prop", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team", "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": object
        }
    }))
    .unwrap()
}

/// Whether a patch may add at `path`: the fields the defaulting policies own.
fn owned(path: &str) -> bool {
    let tokens: Vec<&str> = path.split('/').skip(1).collect();
    match tokens.as_slice() {
        ["metadata", "annotations"] => true,
        ["metadata", "annotations", key] => [
            "kubernetes.io~1limit-ranger",
            "kadmit.io~1defaulted-resources",
        ]
        .contains(key),
        ["spec", "imagePullSecrets"] | ["spec", "imagePullSecrets", _] => true,
        ["spec", "securityContext"] | ["spec", "securityContext", "seccompProfile"] => true,
        ["spec", "containers" | "initContainers", _, rest @ ..] => matches!(
            rest,
            ["resources"]
                | ["resources", "limits" | "requests"]
                | ["resources", "limits" | "requests", _]
                | ["securityContext"]
                | [
                    "securityContext",
                    "allowPrivilegeEscalation" | "seccompProfile"
                ]
                | ["securityContext", "capabilities"]
                | ["securityContext", "capabilities", "drop"]
                | ["securityContext", "capabilities", "drop", "0"]
        ),
        _ => false,
    }
}

fn pipeline() -> Pipeline {
    Pipeline::from_config(&Config::from_yaml(CONFIG).unwrap())
}

proptest! {
    // Failures print the minimal pod; no regression file is written into the source tree.
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn combined_patch_is_additive_owned_valid_and_idempotent(object in pod()) {
        let pipeline = pipeline();
        let cluster = Snapshot::parse(CLUSTER).unwrap();
        let decision = pipeline.evaluate(Endpoint::Mutate, &create(&object), &cluster);
        prop_assert!(decision.response.allowed, "{:?}", decision.response);
        prop_assert!(decision.errors.is_empty(), "{:?}", decision.errors);

        let mut patched = object.clone();
        for op in &decision.response.patch {
            let path = op.path().to_string();
            prop_assert!(owned(&path), "patch outside the owned fields: {path}");
            // LimitRanger's own record is rewritten, as LimitRanger rewrites it; everything else
            // is added where nothing was (a missing member or an array append), so no value the
            // pod set is overwritten.
            let record = path == "/metadata/annotations/kubernetes.io~1limit-ranger";
            match op {
                PatchOperation::Add(_) if !path.starts_with("/spec/imagePullSecrets/") => {
                    prop_assert!(patched.pointer(&path).is_none(), "overwrites {path} in {patched}");
                }
                PatchOperation::Add(_) => {}
                PatchOperation::Replace(_) if record => {}
                _ => return Err(TestCaseError::fail(format!("not an add: {op:?}"))),
            }
            json_patch::patch(&mut patched, std::slice::from_ref(op)).unwrap();
        }
        serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(patched.clone())
            .expect("the patched object decodes as a Pod");
        prop_assert_eq!(&patched["spec"]["x-kadmit-unknown"], &json!("kept"));

        let again = pipeline.evaluate(Endpoint::Mutate, &create(&patched), &cluster);
        prop_assert!(again.response.patch.is_empty(), "second pass: {:?}", again.response.patch);
    }
}

/// The generator reaches the cases that matter, so the property is not vacuous: some pods get
/// patched by each policy.
#[test]
fn generated_pods_exercise_every_policy() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let pipeline = pipeline();
    let cluster = Snapshot::parse(CLUSTER).unwrap();
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let object = pod().new_tree(&mut runner).unwrap().current();
        let decision = pipeline.evaluate(Endpoint::Mutate, &create(&object), &cluster);
        for op in &decision.response.patch {
            let path = op.path().to_string();
            let policy = if path.contains("resources") || path.contains("annotations") {
                "default-resources"
            } else if path.contains("imagePullSecrets") {
                "image-pull-secrets"
            } else {
                "security-defaults"
            };
            seen.insert(policy);
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "default-resources",
            "image-pull-secrets",
            "security-defaults"
        ]
    );
}
