use serde_json::{Value as Json, json};

use crate::cluster::Snapshot;
use crate::policy::Endpoint;
use crate::{Config, Pipeline, Review};

/// Config with only this policy on.
fn pipeline(extra: &str) -> Pipeline {
    let config = Config::from_yaml(&format!(
        "podSecurity: {{enabled: false}}\ngmsa: {{enabled: false}}\n{extra}"
    ))
    .unwrap();
    Pipeline::from_config(&config)
}

fn review(operation: &str, namespace: &str, pod: &Json) -> Review {
    Review::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": operation,
            "userInfo": {"username": "alice"},
            "object": pod,
            "oldObject": if operation == "UPDATE" { pod.clone() } else { Json::Null },
        }
    }))
    .unwrap()
}

fn pod(spec: Json) -> Json {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team"}, "spec": spec})
}

/// Mutates, applies the patch, and checks a second pass changes nothing; returns the patched
/// pod, the patch and the warnings.
fn mutate(pipeline: &Pipeline, cluster: &Snapshot, object: &Json) -> (Json, Json, Vec<String>) {
    let decision = pipeline.evaluate(Endpoint::Mutate, &review("CREATE", "team", object), cluster);
    assert!(decision.response.allowed, "{decision:?}");
    let patch = decision.response.patch.clone();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(patched.clone()).unwrap();
    let again = pipeline.evaluate(
        Endpoint::Mutate,
        &review("CREATE", "team", &patched),
        cluster,
    );
    assert!(
        again.response.patch.is_empty(),
        "second pass: {:?}",
        again.response.patch
    );
    (
        patched,
        serde_json::to_value(&patch).unwrap(),
        decision.response.warnings,
    )
}

fn snapshot(objects: &str) -> Snapshot {
    Snapshot::parse(&format!(
        "kind: Namespace\napiVersion: v1\nmetadata: {{name: team, labels: {{tier: gold}}}}\n---\n{objects}"
    ))
    .unwrap()
}

const RANGE: &str = "kind: LimitRange\napiVersion: v1\nmetadata: {name: a-limits, namespace: team}\nspec:\n  limits:\n  - type: Container\n    max: {memory: 1Gi}\n    default: {cpu: 500m}\n    min: {ephemeral-storage: 1Gi}\n";

#[test]
fn limit_range_defaults_with_the_api_servers_object_defaulting() {
    let (patched, patch, warnings) = mutate(
        &pipeline(""),
        &snapshot(RANGE),
        &pod(json!({"containers": [{"name": "web", "image": "nginx"}]})),
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    // max→default (memory), default→defaultRequest (cpu, memory), min→defaultRequest.
    assert_eq!(
        patched["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "1Gi"},
               "requests": {"cpu": "500m", "ephemeral-storage": "1Gi", "memory": "1Gi"}})
    );
    assert_eq!(
        patched["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, ephemeral-storage, memory request for container web; cpu, memory limit for container web"
    );
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations", "value": {"kubernetes.io/limit-ranger": "LimitRanger plugin set: cpu, ephemeral-storage, memory request for container web; cpu, memory limit for container web"}},
            {"op": "add", "path": "/spec/containers/0/resources", "value": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "500m", "ephemeral-storage": "1Gi", "memory": "1Gi"}}}
        ])
    );
}

#[test]
fn first_range_wins_existing_values_kept_init_yes_ephemeral_no() {
    let second = "kind: LimitRange\nmetadata: {name: b-limits, namespace: team}\nspec:\n  limits:\n  - {type: Container, default: {cpu: '2', memory: 2Gi}, defaultRequest: {cpu: '1', memory: 1Gi}}\n";
    let object = pod(json!({
        "containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "100m"}}}],
        "initContainers": [{"name": "migrate", "image": "tool"}],
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
    }));
    let (patched, _, _) = mutate(
        &pipeline(""),
        &snapshot(&format!("{RANGE}---\n{second}")),
        &object,
    );
    let spec = &patched["spec"];
    assert_eq!(
        spec["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "1Gi"},
               "requests": {"cpu": "100m", "ephemeral-storage": "1Gi", "memory": "1Gi"}})
    );
    assert_eq!(
        spec["initContainers"][0]["resources"]["limits"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    assert!(spec["ephemeralContainers"][0].get("resources").is_none());
    assert_eq!(
        patched["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: ephemeral-storage, memory request for container web; cpu, memory limit for container web; cpu, ephemeral-storage, memory request for init container migrate; cpu, memory limit for init container migrate"
    );
}

#[test]
fn rules_by_selector_after_limit_ranges() {
    let pipeline = pipeline(
        "defaultResources:\n  rules:\n  - namespaceSelector: {matchLabels: {tier: bronze}}\n    default: {cpu: '9'}\n  - namespaceSelector: {matchExpressions: [{key: tier, operator: In, values: [gold]}]}\n    default: {cpu: '1', memory: 512Mi}\n    defaultRequest: {cpu: 250m}\n  - namespaceSelector: {}\n    default: {cpu: '8'}\n",
    );
    let (patched, _, _) = mutate(
        &pipeline,
        &snapshot(RANGE),
        &pod(json!({"containers": [{"name": "web", "image": "nginx"}]})),
    );
    // The LimitRange set cpu and memory limits first; the gold rule adds nothing it set.
    let resources = &patched["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
    assert!(
        patched["metadata"]["annotations"]
            .get("kadmit.io/defaulted-resources")
            .is_none()
    );
    let mut object = pod(json!({"containers": [{"name": "web", "image": "nginx"}]}));
    object["metadata"]["annotations"] = json!({"owner": "team"});
    let (patched, patch, _) = mutate(&pipeline, &snapshot(""), &object);
    let resources = &patched["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"], json!({"cpu": "1", "memory": "512Mi"}));
    // A default limit without a default request defaults the request, as in a LimitRange.
    assert_eq!(
        resources["requests"],
        json!({"cpu": "250m", "memory": "512Mi"})
    );
    assert_eq!(
        patched["metadata"]["annotations"]["kadmit.io/defaulted-resources"],
        "kadmit defaultResources.rules[1] set: cpu, memory request for container web; cpu, memory limit for container web"
    );
    // The annotations object exists, so the key is added into it, its `/` escaped.
    assert_eq!(
        patch[0]["path"],
        "/metadata/annotations/kadmit.io~1defaulted-resources"
    );
}

#[test]
fn never_request_above_limit() {
    let pipeline = pipeline(
        "defaultResources:\n  rules:\n  - default: {cpu: 500m, memory: 1Gi}\n    defaultRequest: {cpu: 100m, memory: 256Mi}\n",
    );
    let object = pod(json!({"containers": [
        {"name": "big", "image": "a", "resources": {"requests": {"cpu": "2", "memory": "1024Mi"}}},
        {"name": "capped", "image": "b", "resources": {"limits": {"memory": "128Mi"}}}
    ]}));
    let (patched, _, warnings) = mutate(&pipeline, &snapshot(""), &object);
    let spec = &patched["spec"]["containers"];
    // 1024Mi == 1Gi by value: not above, so the memory limit is set; cpu 2 > 500m is not.
    assert_eq!(spec[0]["resources"]["limits"], json!({"memory": "1Gi"}));
    assert_eq!(spec[1]["resources"]["requests"], json!({"cpu": "100m"}));
    assert_eq!(
        spec[1]["resources"]["limits"],
        json!({"cpu": "500m", "memory": "128Mi"})
    );
    assert_eq!(
        warnings,
        [
            "kadmit default-resources: container big: the default cpu limit 500m from defaultResources.rules[0] was not set: it is below the container's request 2, and a request above its limit makes the pod invalid",
            "kadmit default-resources: container capped: the default memory request 256Mi from defaultResources.rules[0] was not set: it is above the container's limit 128Mi, and a request above its limit makes the pod invalid",
        ]
    );
}

#[test]
fn only_pod_create_and_empty_resources_kept() {
    let pipeline = pipeline("defaultResources:\n  rules:\n  - default: {cpu: '1'}\n");
    let cluster = snapshot("");
    let object = pod(json!({"containers": [{"name": "web", "image": "nginx", "resources": {}}]}));
    let update = pipeline.evaluate(
        Endpoint::Mutate,
        &review("UPDATE", "team", &object),
        &cluster,
    );
    assert!(update.response.patch.is_empty());
    let (_, patch, _) = mutate(&pipeline, &cluster, &object);
    let paths: Vec<&str> = patch
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations",
            "/spec/containers/0/resources/limits",
            "/spec/containers/0/resources/requests"
        ]
    );
    // With limitRanges off and no rules the policy is not even in the pipeline.
    let off = super::super::pipeline::Pipeline::from_config(
        &Config::from_yaml("defaultResources: {limitRanges: false}\n").unwrap(),
    );
    assert!(!off.policy_names().contains(&"default-resources"));
}

#[test]
fn summary_goes_where_configured() {
    let object = pod(json!({"containers": [{"name": "web", "image": "nginx"}]}));
    let rules = "defaultResources:\n  rules:\n  - default: {cpu: '1'}\n";
    let decision = pipeline(rules).evaluate(
        Endpoint::Mutate,
        &review("CREATE", "team", &object),
        &snapshot(""),
    );
    assert_eq!(
        decision.response.audit_annotations["default-resources"],
        "set from defaultResources.rules[0]: cpu request for container web; cpu limit for container web"
    );
    assert!(decision.response.warnings.is_empty());
    let decision = pipeline(&format!("mutationSummary: warnings\n{rules}")).evaluate(
        Endpoint::Mutate,
        &review("CREATE", "team", &object),
        &snapshot(""),
    );
    assert!(decision.response.audit_annotations.is_empty());
    assert_eq!(
        decision.response.warnings,
        [
            "kadmit default-resources: set from defaultResources.rules[0]: cpu request for container web; cpu limit for container web"
        ]
    );
}
