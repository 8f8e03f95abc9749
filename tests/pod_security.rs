//! Pod Security admission behaviour (spec §4) through the real HTTPS server and a real client:
//! namespace labels, invalid labels, warn defaulting, exemptions, significant updates and
//! ephemeral containers, workload resources in each `workloads` mode, namespace label changes
//! (existing-pod warnings, the 3000-pod cap), namespace lookup failures and the upstream metrics.
//!
//! Every answer is compared whole (`allowed`, `status`, `warnings`, `auditAnnotations`), so an
//! extra warning or annotation fails the test as surely as a missing one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TestOptions, TestServer, post_json};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kadmit::core::cluster::ClusterError;
use kadmit::core::cluster::Snapshot;
use kadmit::core::{ClusterView, Config};
use serde_json::{Value, json};

const PREFIX: &str = "pod-security.kubernetes.io/";

/// What `restricted` says about the single container `app` of [`plain_spec`].
const RESTRICTED_APP: &str = concat!(
    r#"allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false), "#,
    r#"unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]), "#,
    r#"runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true), "#,
    r#"seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
);
/// The reasons alone of [`RESTRICTED_APP`], as namespace warnings list them.
const RESTRICTED_REASONS: &str = "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile";
const HOST_NETWORK: &str = "host namespaces (hostNetwork=true)";

// ---------------------------------------------------------------------------------------------
// Objects

/// A pod spec that passes baseline and fails restricted.
fn plain_spec() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx"}]})
}

/// A pod spec that fails baseline (host namespaces) and restricted.
fn host_network_spec() -> Value {
    json!({"hostNetwork": true, "containers": [{"name": "app", "image": "nginx"}]})
}

/// The security context that satisfies every restricted container check.
fn restricted_container_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// A pod spec that passes restricted.
fn restricted_spec() -> Value {
    json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app",
            "image": "nginx",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
        }]
    })
}

fn pod(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": spec
    })
}

/// `pod-security.kubernetes.io/<key>` labels.
fn psa_labels(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
        .collect()
}

fn namespace_object(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut labels = psa_labels(labels);
    labels.insert("kubernetes.io/metadata.name".to_owned(), name.to_owned());
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    serde_json::from_value(namespace_object(name, labels)).unwrap()
}

/// A snapshot holding exactly these namespaces (no implicit ones).
fn snapshot(namespaces: &[(&str, &[(&str, &str)])]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for (name, labels) in namespaces {
        snapshot.insert_namespace(namespace(name, labels));
    }
    snapshot
}

/// A typed pod for snapshots, from a JSON spec.
fn typed_pod(namespace: &str, name: &str, spec: Value) -> Pod {
    serde_json::from_value(pod(namespace, name, spec)).unwrap()
}

/// The eight workload kinds: (group, kind, resource), and the object with `template` at the
/// kind's template path.
const WORKLOADS: [(&str, &str, &str); 8] = [
    ("", "ReplicationController", "replicationcontrollers"),
    ("", "PodTemplate", "podtemplates"),
    ("apps", "ReplicaSet", "replicasets"),
    ("apps", "Deployment", "deployments"),
    ("apps", "StatefulSet", "statefulsets"),
    ("apps", "DaemonSet", "daemonsets"),
    ("batch", "Job", "jobs"),
    ("batch", "CronJob", "cronjobs"),
];

fn workload_object(group: &str, kind: &str, namespace: &str, name: &str, spec: &Value) -> Value {
    let api_version = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/v1")
    };
    let mut pod_spec = spec.clone();
    if matches!(kind, "Job" | "CronJob") {
        pod_spec["restartPolicy"] = json!("Never");
    }
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec});
    let selector = json!({"matchLabels": {"app": "web"}});
    let body = match kind {
        "ReplicationController" => {
            json!({"spec": {"selector": {"app": "web"}, "template": template}})
        }
        "PodTemplate" => json!({"template": template}),
        "ReplicaSet" | "Deployment" | "DaemonSet" => {
            json!({"spec": {"selector": selector, "template": template}})
        }
        "StatefulSet" => {
            json!({"spec": {"selector": selector, "serviceName": "web", "template": template}})
        }
        "Job" => json!({"spec": {"template": template}}),
        "CronJob" => json!({
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}
        }),
        other => panic!("not a workload kind: {other}"),
    };
    let mut object = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace}
    });
    for (key, value) in body.as_object().unwrap() {
        object[key] = value.clone();
    }
    object
}

// ---------------------------------------------------------------------------------------------
// Reviews

static UIDS: AtomicUsize = AtomicUsize::new(0);

/// An `admission.k8s.io/v1` review; `kind` and `resource` are `[group, version, name]`.
fn review(
    kind: [&str; 3],
    resource: [&str; 3],
    namespace: &str,
    name: &str,
    operation: &str,
    object: Value,
) -> Value {
    let n = UIDS.fetch_add(1, Ordering::SeqCst);
    let mut request = json!({
        "uid": format!("7e1c0000-0000-4000-8000-{n:012}"),
        "kind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
        "resource": {"group": resource[0], "version": resource[1], "resource": resource[2]},
        "operation": operation,
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": object
    });
    if !namespace.is_empty() {
        request["namespace"] = json!(namespace);
    }
    if !name.is_empty() {
        request["name"] = json!(name);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

const POD_KIND: [&str; 3] = ["", "v1", "Pod"];
const PODS: [&str; 3] = ["", "v1", "pods"];

fn pod_create(namespace: &str, name: &str, spec: Value) -> Value {
    review(
        POD_KIND,
        PODS,
        namespace,
        name,
        "CREATE",
        pod(namespace, name, spec),
    )
}

fn pod_update(namespace: &str, name: &str, old: Value, new: Value) -> Value {
    let mut review = review(POD_KIND, PODS, namespace, name, "UPDATE", new);
    review["request"]["oldObject"] = old;
    review
}

fn workload_create(
    group: &str,
    kind: &str,
    resource: &str,
    namespace: &str,
    spec: &Value,
) -> Value {
    review(
        [group, "v1", kind],
        [group, "v1", resource],
        namespace,
        "web",
        "CREATE",
        workload_object(group, kind, namespace, "web", spec),
    )
}

fn deployment_create(namespace: &str, spec: &Value) -> Value {
    workload_create("apps", "Deployment", "deployments", namespace, spec)
}

fn namespace_review(
    operation: &str,
    name: &str,
    new: &[(&str, &str)],
    old: Option<&[(&str, &str)]>,
) -> Value {
    let mut review = review(
        ["", "v1", "Namespace"],
        ["", "v1", "namespaces"],
        name,
        name,
        operation,
        namespace_object(name, new),
    );
    if let Some(old) = old {
        review["request"]["oldObject"] = namespace_object(name, old);
    }
    review
}

// ---------------------------------------------------------------------------------------------
// Server

async fn start(config: &str, cluster: Snapshot) -> TestServer {
    TestServer::start(TestOptions {
        config: Config::from_yaml(config).unwrap(),
        cluster: Arc::new(cluster),
        ..TestOptions::default()
    })
    .await
}

/// Sends `review` to `/validate` and returns its `response` (HTTP 200, uid echoed).
async fn send(server: &TestServer, review: &Value) -> Value {
    let (status, answer) = post_json(&server.client(), &server.url("/validate"), review).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
    assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
    assert_eq!(
        answer["response"]["uid"], review["request"]["uid"],
        "{answer}"
    );
    answer["response"].clone()
}

/// `expected` with the review's uid.
fn expected_with_uid(review: &Value, mut expected: Value) -> Value {
    expected["uid"] = review["request"]["uid"].clone();
    expected
}

/// Sends `review` and asserts the whole response equals `expected` (plus the uid).
async fn expect(server: &TestServer, review: &Value, expected: Value, what: &str) {
    let response = send(server, review).await;
    let expected = expected_with_uid(review, expected);
    assert_eq!(
        response,
        expected,
        "{what}\n  got:      {}\n  expected: {}",
        serde_json::to_string_pretty(&response).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
}

fn allowed() -> Value {
    json!({"allowed": true})
}

/// A 403 denial; `annotations` is left out when empty, as on the wire. Pod denials carry
/// upstream's status details (kind `pods` and the pod's name, when it has one).
fn forbidden(message: String, annotations: Value) -> Value {
    let mut response = json!({
        "allowed": false,
        "status": {"status": "Failure", "message": message, "reason": "Forbidden", "code": 403}
    });
    if let Some(rest) = message.strip_prefix("pods \"") {
        let name = rest.split('"').next().unwrap_or_default();
        response["status"]["details"] = json!({"name": name, "kind": "pods"});
    } else if message.starts_with("pods is forbidden") {
        response["status"]["details"] = json!({"kind": "pods"});
    }
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        response["auditAnnotations"] = annotations;
    }
    response
}

fn pod_forbidden(name: &str, policy: &str, detail: &str, annotations: Value) -> Value {
    forbidden(
        format!("pods \"{name}\" is forbidden: violates PodSecurity \"{policy}\": {detail}"),
        annotations,
    )
}

fn would_violate(policy: &str, detail: &str) -> String {
    format!("would violate PodSecurity \"{policy}\": {detail}")
}

async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("http://{}/metrics", server.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The `pod_security_*` sample lines of the metrics text.
fn pod_security_lines(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("pod_security_"))
        .collect()
}

#[track_caller]
fn assert_metric(metrics: &str, line: &str) {
    assert!(
        metrics.lines().any(|l| l == line),
        "missing metric line\n  {line}\nin\n{}",
        pod_security_lines(metrics).join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// §4.1 / §4.6: labels → policy; enforce, audit, warn

#[tokio::test]
async fn namespace_labels_override_defaults_and_drive_enforce_audit_and_warn() {
    let config = "podSecurity:\n  defaults:\n    enforce: baseline\n    enforceVersion: v1.29\n    audit: baseline\n    auditVersion: v1.20\n    warn: baseline\n";
    let server = start(
        config,
        snapshot(&[
            ("unlabelled", &[]),
            (
                "labelled",
                &[
                    ("enforce", "baseline"),
                    ("enforce-version", "v1.30"),
                    ("audit", "restricted"),
                    ("audit-version", "v1.25"),
                    ("warn", "restricted"),
                ],
            ),
            ("strict", &[("enforce", "restricted")]),
        ]),
    )
    .await;

    // No labels: the configured defaults.
    expect(
        &server,
        &pod_create("unlabelled", "hostnet", host_network_spec()),
        pod_forbidden(
            "hostnet",
            "baseline:v1.29",
            HOST_NETWORK,
            json!({
                "enforce-policy": "baseline:v1.29",
                "audit-violations": would_violate("baseline:v1.20", HOST_NETWORK),
            }),
        ),
        "defaults: enforce baseline:v1.29 denies, audit baseline:v1.20 records, no warning when denied",
    )
    .await;
    expect(
        &server,
        &pod_create("unlabelled", "plain", plain_spec()),
        json!({"allowed": true, "auditAnnotations": {"enforce-policy": "baseline:v1.29"}}),
        "defaults: a baseline pod passes every mode",
    )
    .await;

    // Labels override each field; warn-version is absent, so warn uses the default version.
    let audit_detail = format!("{HOST_NETWORK}, {RESTRICTED_APP}");
    expect(
        &server,
        &pod_create("labelled", "hostnet", host_network_spec()),
        pod_forbidden(
            "hostnet",
            "baseline:v1.30",
            HOST_NETWORK,
            json!({
                "enforce-policy": "baseline:v1.30",
                "audit-violations": would_violate("restricted:v1.25", &audit_detail),
            }),
        ),
        "labelled: enforce baseline:v1.30 denies, audit restricted:v1.25 records, warn silent when denied",
    )
    .await;
    expect(
        &server,
        &pod_create("labelled", "plain", plain_spec()),
        json!({
            "allowed": true,
            "warnings": [would_violate("restricted:latest", RESTRICTED_APP)],
            "auditAnnotations": {
                "enforce-policy": "baseline:v1.30",
                "audit-violations": would_violate("restricted:v1.25", RESTRICTED_APP),
            }
        }),
        "labelled: allowed by enforce, audited and warned at restricted",
    )
    .await;
    expect(
        &server,
        &pod_create("labelled", "good", restricted_spec()),
        json!({"allowed": true, "auditAnnotations": {"enforce-policy": "baseline:v1.30"}}),
        "labelled: a restricted pod has nothing to report",
    )
    .await;

    // Only the level is labelled: the configured enforce version stays. A restricted-failing
    // pod is denied; audit (default baseline:v1.20) passes.
    expect(
        &server,
        &pod_create("strict", "plain", plain_spec()),
        pod_forbidden(
            "plain",
            "restricted:v1.29",
            RESTRICTED_APP,
            json!({"enforce-policy": "restricted:v1.29"}),
        ),
        "strict: restricted denial names every failed check in order",
    )
    .await;

    // generateName: the request has no name yet.
    expect(
        &server,
        &pod_create("strict", "", plain_spec()),
        forbidden(
            format!(
                "pods is forbidden: violates PodSecurity \"restricted:v1.29\": {RESTRICTED_APP}"
            ),
            json!({"enforce-policy": "restricted:v1.29"}),
        ),
        "strict: no name",
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// §4.1: invalid labels

#[tokio::test]
async fn invalid_labels_fail_closed_for_enforce_and_open_for_audit_and_warn() {
    // Strict audit/warn defaults, to show invalid audit/warn labels loosen them to privileged.
    let config = "podSecurity:\n  defaults:\n    audit: restricted\n    warn: restricted\n";
    let server = start(
        config,
        snapshot(&[
            ("bad-enforce", &[("enforce", "foo")]),
            (
                "bad-version",
                &[("enforce", "baseline"), ("enforce-version", "1.30")],
            ),
            (
                "bad-audit-warn",
                &[("audit", "loud"), ("warn", "Restricted")],
            ),
        ]),
    )
    .await;

    let enforce_error = r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, baseline, restricted"#;
    expect(
        &server,
        &pod_create("bad-enforce", "plain", plain_spec()),
        pod_forbidden(
            "plain",
            "restricted:latest",
            RESTRICTED_APP,
            json!({
                "enforce-policy": "restricted:latest",
                "audit-violations": would_violate("restricted:latest", RESTRICTED_APP),
                "error": format!("Failed to parse policy: {enforce_error}"),
            }),
        ),
        "an invalid enforce level is restricted: a baseline-compliant pod is denied",
    )
    .await;

    let version_error = r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "1.30": must be "latest" or "v1.x""#;
    expect(
        &server,
        &pod_create("bad-version", "hostnet", host_network_spec()),
        pod_forbidden(
            "hostnet",
            "baseline:latest",
            HOST_NETWORK,
            json!({
                "enforce-policy": "baseline:latest",
                "audit-violations": would_violate(
                    "restricted:latest",
                    &format!("{HOST_NETWORK}, {RESTRICTED_APP}"),
                ),
                "error": format!("Failed to parse policy: {version_error}"),
            }),
        ),
        "an invalid version is latest",
    )
    .await;

    let audit_warn_errors = concat!(
        r#"[metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "loud": must be one of privileged, baseline, restricted, "#,
        r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "Restricted": must be one of privileged, baseline, restricted]"#
    );
    expect(
        &server,
        &pod_create("bad-audit-warn", "hostnet", host_network_spec()),
        json!({
            "allowed": true,
            "auditAnnotations": {
                "enforce-policy": "privileged:latest",
                "error": format!("Failed to parse policy: {audit_warn_errors}"),
            }
        }),
        "invalid audit and warn levels are privileged (no audit-violations, no warnings)",
    )
    .await;

    let metrics = metrics(&server).await;
    assert_metric(
        &metrics,
        r#"pod_security_errors_total{fatal="false",request_operation="create",resource="pod",subresource=""} 3"#,
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// §4.1: warn defaulting, seen on workloads (never enforced in `workloads: warn` mode)

#[tokio::test]
async fn warn_follows_a_stricter_explicit_enforce_label() {
    let server = start(
        "",
        snapshot(&[
            (
                "enforce-only",
                &[("enforce", "baseline"), ("enforce-version", "v1.30")],
            ),
            (
                "warn-version",
                &[
                    ("enforce", "restricted"),
                    ("enforce-version", "v1.30"),
                    ("warn-version", "v1.25"),
                ],
            ),
            (
                "explicit-warn",
                &[("enforce", "restricted"), ("warn", "baseline")],
            ),
            ("invalid-enforce", &[("enforce", "nope")]),
        ]),
    )
    .await;

    expect(
        &server,
        &deployment_create("enforce-only", &host_network_spec()),
        json!({"allowed": true, "warnings": [would_violate("baseline:v1.30", HOST_NETWORK)]}),
        "enforce label only: warn at the enforce level and version",
    )
    .await;
    // The pod itself is denied, so it carries no warning.
    expect(
        &server,
        &pod_create("enforce-only", "hostnet", host_network_spec()),
        pod_forbidden(
            "hostnet",
            "baseline:v1.30",
            HOST_NETWORK,
            json!({"enforce-policy": "baseline:v1.30"}),
        ),
        "enforce label only: the pod is denied without warnings",
    )
    .await;
    expect(
        &server,
        &deployment_create("warn-version", &plain_spec()),
        json!({"allowed": true, "warnings": [would_violate("restricted:v1.25", RESTRICTED_APP)]}),
        "a warn-version label keeps its version, the level follows enforce",
    )
    .await;
    expect(
        &server,
        &deployment_create("explicit-warn", &plain_spec()),
        allowed(),
        "an explicit warn label is not overridden",
    )
    .await;
    expect(
        &server,
        &deployment_create("invalid-enforce", &host_network_spec()),
        json!({
            "allowed": true,
            "auditAnnotations": {
                "error": r#"Failed to parse policy: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "nope": must be one of privileged, baseline, restricted"#
            }
        }),
        "an invalid enforce label does not raise warn",
    )
    .await;
    server.stop().await;

    // A default warn level stricter than the enforce label is kept.
    let server = start(
        "podSecurity:\n  defaults:\n    warn: restricted\n",
        snapshot(&[("enforce-baseline", &[("enforce", "baseline")])]),
    )
    .await;
    expect(
        &server,
        &deployment_create("enforce-baseline", &host_network_spec()),
        json!({
            "allowed": true,
            "warnings": [would_violate("restricted:latest", &format!("{HOST_NETWORK}, {RESTRICTED_APP}"))]
        }),
        "warn is never loosened to the enforce level",
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// §4.2: exemptions

#[tokio::test]
async fn exemptions_by_user_namespace_and_runtime_class() {
    let config = r#"
podSecurity:
  exemptions:
    usernames: ["system:serviceaccount:ci:deployer"]
    namespaces: ["kube-system"]
    runtimeClasses: ["kata"]
"#;
    let server = start(
        config,
        snapshot(&[
            ("locked", &[("enforce", "restricted")]),
            ("kube-system", &[("enforce", "restricted")]),
        ]),
    )
    .await;
    let exemptions = |resource: &str, n: u32| {
        format!(
            r#"pod_security_exemptions_total{{request_operation="create",resource="{resource}",subresource=""}} {n}"#
        )
    };
    let exempt = |why: &str| json!({"allowed": true, "auditAnnotations": {"exempt": why}});
    let denied = pod_forbidden(
        "hostnet",
        "restricted:latest",
        &format!("{HOST_NETWORK}, {RESTRICTED_APP}"),
        json!({"enforce-policy": "restricted:latest"}),
    );

    // User.
    let mut by_deployer = pod_create("locked", "hostnet", host_network_spec());
    by_deployer["request"]["userInfo"]["username"] = json!("system:serviceaccount:ci:deployer");
    expect(&server, &by_deployer, exempt("user"), "exempt user").await;
    assert_metric(&metrics(&server).await, &exemptions("pod", 1));
    expect(
        &server,
        &pod_create("locked", "hostnet", host_network_spec()),
        denied.clone(),
        "another user is not exempt",
    )
    .await;

    // Namespace (checked before the user).
    expect(
        &server,
        &pod_create("kube-system", "hostnet", host_network_spec()),
        exempt("namespace"),
        "exempt namespace",
    )
    .await;
    let mut both = pod_create("kube-system", "hostnet", host_network_spec());
    both["request"]["userInfo"]["username"] = json!("system:serviceaccount:ci:deployer");
    expect(
        &server,
        &both,
        exempt("namespace"),
        "namespace wins over user",
    )
    .await;

    // Runtime class.
    let mut kata = host_network_spec();
    kata["runtimeClassName"] = json!("kata");
    expect(
        &server,
        &pod_create("locked", "hostnet", kata.clone()),
        exempt("runtimeClass"),
        "exempt runtime class",
    )
    .await;
    let mut gvisor = host_network_spec();
    gvisor["runtimeClassName"] = json!("gvisor");
    expect(
        &server,
        &pod_create("locked", "hostnet", gvisor),
        denied,
        "another runtime class is not exempt",
    )
    .await;

    // The same exemptions for workloads.
    let mut deployment = deployment_create("locked", &host_network_spec());
    deployment["request"]["userInfo"]["username"] = json!("system:serviceaccount:ci:deployer");
    expect(
        &server,
        &deployment,
        exempt("user"),
        "workload: exempt user",
    )
    .await;
    expect(
        &server,
        &deployment_create("kube-system", &host_network_spec()),
        exempt("namespace"),
        "workload: exempt namespace",
    )
    .await;
    expect(
        &server,
        &deployment_create("locked", &kata),
        exempt("runtimeClass"),
        "workload: exempt runtime class in the template",
    )
    .await;

    let metrics = metrics(&server).await;
    assert_metric(&metrics, &exemptions("pod", 4));
    assert_metric(&metrics, &exemptions("controller", 3));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// §4.3: significant updates, ephemeral containers, ignored subresources

#[tokio::test]
async fn only_significant_pod_updates_are_evaluated() {
    let server = start("", snapshot(&[("base", &[("enforce", "baseline")])])).await;
    let old = pod("base", "web", host_network_spec());
    let denied = || {
        pod_forbidden(
            "web",
            "baseline:latest",
            HOST_NETWORK,
            json!({"enforce-policy": "baseline:latest"}),
        )
    };

    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["version"] = json!("2");
    expect(
        &server,
        &pod_update("base", "web", old.clone(), relabelled),
        allowed(),
        "a label change is not evaluated",
    )
    .await;
    let mut annotated = old.clone();
    annotated["metadata"]["annotations"] = json!({
        "note": "x",
        "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"
    });
    expect(
        &server,
        &pod_update("base", "web", old.clone(), annotated),
        allowed(),
        "an annotation change (even seccomp/AppArmor) is not evaluated",
    )
    .await;
    let mut tolerations = old.clone();
    tolerations["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    tolerations["spec"]["activeDeadlineSeconds"] = json!(60);
    expect(
        &server,
        &pod_update("base", "web", old.clone(), tolerations),
        allowed(),
        "tolerations and activeDeadlineSeconds are not significant",
    )
    .await;

    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("nginx:2");
    expect(
        &server,
        &pod_update("base", "web", old.clone(), image),
        denied(),
        "an image change is evaluated",
    )
    .await;
    let mut added = old.clone();
    added["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "envoy"}));
    expect(
        &server,
        &pod_update("base", "web", old.clone(), added),
        denied(),
        "an added container is evaluated",
    )
    .await;
    let mut init = old.clone();
    init["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
    expect(
        &server,
        &pod_update("base", "web", old.clone(), init),
        denied(),
        "an added init container is evaluated",
    )
    .await;

    let metrics = metrics(&server).await;
    assert_metric(
        &metrics,
        r#"pod_security_evaluations_total{decision="deny",policy_level="baseline",policy_version="latest",mode="enforce",request_operation="update",resource="pod",subresource=""} 3"#,
    );
    assert!(
        !metrics.contains(r#"decision="allow""#),
        "insignificant updates record nothing:\n{}",
        pod_security_lines(&metrics).join("\n")
    );
    server.stop().await;
}

fn with_ephemeral(pod: &Value, container: Value) -> Value {
    let mut pod = pod.clone();
    pod["spec"]["ephemeralContainers"] = json!([container]);
    pod
}

fn ephemeral_update(old: Value, new: Value) -> Value {
    let mut review = pod_update("locked", "web", old, new);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review
}

#[tokio::test]
async fn ephemeral_containers_evaluate_the_whole_pod() {
    let server = start("", snapshot(&[("locked", &[("enforce", "restricted")])])).await;
    let compliant_debugger = json!({
        "name": "debugger",
        "image": "busybox",
        "targetContainerName": "app",
        "securityContext": restricted_container_context()
    });
    let bare_debugger =
        json!({"name": "debugger", "image": "busybox", "targetContainerName": "app"});

    // An old, non-compliant pod cannot get even a compliant debug container.
    let old = pod("locked", "web", plain_spec());
    expect(
        &server,
        &ephemeral_update(
            old.clone(),
            with_ephemeral(&old, compliant_debugger.clone()),
        ),
        pod_forbidden(
            "web",
            "restricted:latest",
            RESTRICTED_APP,
            json!({"enforce-policy": "restricted:latest"}),
        ),
        "the existing containers are evaluated",
    )
    .await;

    // A compliant pod with a non-compliant debug container.
    let old = pod("locked", "web", restricted_spec());
    expect(
        &server,
        &ephemeral_update(old.clone(), with_ephemeral(&old, bare_debugger.clone())),
        pod_forbidden(
            "web",
            "restricted:latest",
            concat!(
                r#"allowPrivilegeEscalation != false (container "debugger" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "debugger" must set securityContext.capabilities.drop=["ALL"])"#
            ),
            json!({"enforce-policy": "restricted:latest"}),
        ),
        "the new ephemeral container is evaluated",
    )
    .await;

    // A compliant pod with a compliant debug container.
    expect(
        &server,
        &ephemeral_update(
            old.clone(),
            with_ephemeral(&old, compliant_debugger.clone()),
        ),
        json!({"allowed": true, "auditAnnotations": {"enforce-policy": "restricted:latest"}}),
        "compliant pod and debug container",
    )
    .await;

    // An ephemeral container's image change is significant; nothing else about it is.
    let existing = with_ephemeral(&old, bare_debugger.clone());
    let mut new_image = bare_debugger.clone();
    new_image["image"] = json!("busybox:2");
    expect(
        &server,
        &ephemeral_update(existing.clone(), with_ephemeral(&old, new_image)),
        pod_forbidden(
            "web",
            "restricted:latest",
            concat!(
                r#"allowPrivilegeEscalation != false (container "debugger" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "debugger" must set securityContext.capabilities.drop=["ALL"])"#
            ),
            json!({"enforce-policy": "restricted:latest"}),
        ),
        "an ephemeral container's new image is evaluated",
    )
    .await;
    let mut relabelled = existing.clone();
    relabelled["metadata"]["labels"]["debug"] = json!("yes");
    expect(
        &server,
        &ephemeral_update(existing, relabelled),
        allowed(),
        "no new ephemeral container: not evaluated",
    )
    .await;

    // Subresources kadmit does not know are evaluated like the pod itself (fail-safe).
    let old = pod("locked", "web", plain_spec());
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:2");
    let mut future = pod_update("locked", "web", old, new);
    future["request"]["subResource"] = json!("future-subresource");
    expect(
        &server,
        &future,
        pod_forbidden(
            "web",
            "restricted:latest",
            RESTRICTED_APP,
            json!({"enforce-policy": "restricted:latest"}),
        ),
        "an unknown subresource is evaluated",
    )
    .await;

    let metrics = metrics(&server).await;
    assert_metric(
        &metrics,
        r#"pod_security_evaluations_total{decision="deny",policy_level="restricted",policy_version="latest",mode="enforce",request_operation="update",resource="pod",subresource="ephemeralcontainers"} 3"#,
    );
    assert_metric(
        &metrics,
        r#"pod_security_evaluations_total{decision="allow",policy_level="restricted",policy_version="latest",mode="enforce",request_operation="update",resource="pod",subresource="ephemeralcontainers"} 1"#,
    );
    server.stop().await;
}

#[tokio::test]
async fn ignored_pod_subresources_are_allowed_without_evaluation() {
    let server = start(
        "",
        snapshot(&[(
            "locked",
            &[
                ("enforce", "restricted"),
                ("audit", "restricted"),
                ("warn", "restricted"),
            ],
        )]),
    )
    .await;
    let violating = pod("locked", "web", host_network_spec());
    let cases = [
        (
            "exec",
            "CONNECT",
            ["", "v1", "PodExecOptions"],
            json!({"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh"], "stdin": true}),
        ),
        (
            "attach",
            "CONNECT",
            ["", "v1", "PodAttachOptions"],
            json!({"kind": "PodAttachOptions", "apiVersion": "v1", "stdin": true}),
        ),
        (
            "portforward",
            "CONNECT",
            ["", "v1", "PodPortForwardOptions"],
            json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [80]}),
        ),
        (
            "proxy",
            "CONNECT",
            ["", "v1", "PodProxyOptions"],
            json!({"kind": "PodProxyOptions", "apiVersion": "v1", "path": "/"}),
        ),
        (
            "log",
            "CONNECT",
            ["", "v1", "PodLogOptions"],
            json!({"kind": "PodLogOptions", "apiVersion": "v1"}),
        ),
        (
            "binding",
            "CREATE",
            ["", "v1", "Binding"],
            json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": "n1"}}),
        ),
        (
            "eviction",
            "CREATE",
            ["policy", "v1", "Eviction"],
            json!({"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "web", "namespace": "locked"}}),
        ),
    ];
    for (subresource, operation, kind, object) in cases {
        let mut review = review(kind, PODS, "locked", "web", operation, object);
        review["request"]["subResource"] = json!(subresource);
        expect(&server, &review, allowed(), subresource).await;
    }
    // status updates carry a whole (violating) pod, with a changed image even.
    let mut new = violating.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:2");
    let mut status = pod_update("locked", "web", violating.clone(), new);
    status["request"]["subResource"] = json!("status");
    expect(&server, &status, allowed(), "status").await;

    let metrics = metrics(&server).await;
    assert!(
        pod_security_lines(&metrics).is_empty(),
        "ignored subresources record nothing:\n{}",
        pod_security_lines(&metrics).join("\n")
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// §4.4: workloads, in each `workloads` mode

const WORKLOAD_LABELS: &[(&str, &str)] = &[
    ("enforce", "baseline"),
    ("enforce-version", "v1.30"),
    ("audit", "baseline"),
    ("audit-version", "v1.29"),
    ("warn", "baseline"),
    ("warn-version", "v1.28"),
];

async fn workload_server(mode: &str) -> TestServer {
    start(
        &format!("podSecurity:\n  workloads: {mode}\n"),
        snapshot(&[
            ("apps", WORKLOAD_LABELS),
            // Enforced, but neither audited nor warned.
            (
                "quiet",
                &[("enforce", "restricted"), ("warn", "privileged")],
            ),
        ]),
    )
    .await
}

#[tokio::test]
async fn workloads_in_warn_mode_are_audited_and_warned_never_denied() {
    let server = workload_server("warn").await;
    for (group, kind, resource) in WORKLOADS {
        expect(
            &server,
            &workload_create(group, kind, resource, "apps", &host_network_spec()),
            json!({
                "allowed": true,
                "warnings": [would_violate("baseline:v1.28", HOST_NETWORK)],
                "auditAnnotations": {"audit-violations": would_violate("baseline:v1.29", HOST_NETWORK)}
            }),
            kind,
        )
        .await;
        expect(
            &server,
            &workload_create(group, kind, resource, "apps", &plain_spec()),
            allowed(),
            kind,
        )
        .await;
    }
    // Audit and warn privileged: nothing to evaluate, whatever enforce says.
    expect(
        &server,
        &deployment_create("quiet", &host_network_spec()),
        allowed(),
        "warn mode: audit and warn privileged",
    )
    .await;
    let mut update = deployment_create("apps", &host_network_spec());
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] =
        workload_object("apps", "Deployment", "apps", "web", &host_network_spec());
    expect(
        &server,
        &update,
        json!({
            "allowed": true,
            "warnings": [would_violate("baseline:v1.28", HOST_NETWORK)],
            "auditAnnotations": {"audit-violations": would_violate("baseline:v1.29", HOST_NETWORK)}
        }),
        "workload updates are evaluated whatever changed",
    )
    .await;
    let metrics = metrics(&server).await;
    assert_metric(
        &metrics,
        r#"pod_security_evaluations_total{decision="deny",policy_level="baseline",policy_version="v1.28",mode="warn",request_operation="create",resource="controller",subresource=""} 8"#,
    );
    assert_metric(
        &metrics,
        r#"pod_security_evaluations_total{decision="deny",policy_level="baseline",policy_version="v1.29",mode="audit",request_operation="create",resource="controller",subresource=""} 8"#,
    );
    assert!(
        !metrics.contains(r#"mode="enforce""#),
        "enforce is not evaluated for workloads in warn mode:\n{}",
        pod_security_lines(&metrics).join("\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn workloads_in_enforce_mode_are_denied_like_their_pods() {
    let server = workload_server("enforce").await;
    for (group, kind, resource) in WORKLOADS {
        expect(
            &server,
            &workload_create(group, kind, resource, "apps", &host_network_spec()),
            forbidden(
                format!(
                    "{kind} \"web\" is forbidden: the pods it would create violate PodSecurity \"baseline:v1.30\": {HOST_NETWORK}"
                ),
                json!({"audit-violations": would_violate("baseline:v1.29", HOST_NETWORK)}),
            ),
            kind,
        )
        .await;
        expect(
            &server,
            &workload_create(group, kind, resource, "apps", &plain_spec()),
            allowed(),
            kind,
        )
        .await;
    }
    // kadmit's enforce mode applies the namespace's enforce level even when audit and warn
    // are privileged.
    expect(
        &server,
        &deployment_create("quiet", &plain_spec()),
        forbidden(
            format!(
                "Deployment \"web\" is forbidden: the pods it would create violate PodSecurity \"restricted:latest\": {RESTRICTED_APP}"
            ),
            json!({}),
        ),
        "enforce mode: audit and warn privileged",
    )
    .await;
    expect(
        &server,
        &deployment_create("quiet", &restricted_spec()),
        allowed(),
        "enforce mode: compliant template",
    )
    .await;
    // Subresources (scale, status) are not evaluated.
    let mut scale = review(
        ["autoscaling", "v1", "Scale"],
        ["apps", "v1", "deployments"],
        "apps",
        "web",
        "UPDATE",
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "apps"}, "spec": {"replicas": 3}}),
    );
    scale["request"]["subResource"] = json!("scale");
    expect(&server, &scale, allowed(), "scale").await;
    let mut status = deployment_create("apps", &host_network_spec());
    status["request"]["operation"] = json!("UPDATE");
    status["request"]["subResource"] = json!("status");
    status["request"]["oldObject"] = status["request"]["object"].clone();
    expect(&server, &status, allowed(), "status").await;

    let metrics = metrics(&server).await;
    assert_metric(
        &metrics,
        r#"pod_security_evaluations_total{decision="deny",policy_level="baseline",policy_version="v1.30",mode="enforce",request_operation="create",resource="controller",subresource=""} 8"#,
    );
    assert_metric(
        &metrics,
        r#"pod_security_evaluations_total{decision="allow",policy_level="baseline",policy_version="v1.30",mode="enforce",request_operation="create",resource="controller",subresource=""} 8"#,
    );
    server.stop().await;
}

#[tokio::test]
async fn workloads_in_ignore_mode_are_not_evaluated() {
    let server = workload_server("ignore").await;
    for (group, kind, resource) in WORKLOADS {
        expect(
            &server,
            &workload_create(group, kind, resource, "apps", &host_network_spec()),
            allowed(),
            kind,
        )
        .await;
    }
    // Not even the namespace is looked up.
    expect(
        &server,
        &deployment_create("ghost", &host_network_spec()),
        allowed(),
        "ignore: missing namespace",
    )
    .await;
    // Pods are still enforced.
    expect(
        &server,
        &pod_create("apps", "hostnet", host_network_spec()),
        pod_forbidden(
            "hostnet",
            "baseline:v1.30",
            HOST_NETWORK,
            json!({
                "enforce-policy": "baseline:v1.30",
                "audit-violations": would_violate("baseline:v1.29", HOST_NETWORK),
            }),
        ),
        "ignore: pods are enforced",
    )
    .await;
    let metrics = metrics(&server).await;
    assert!(
        !metrics.contains(r#"resource="controller""#),
        "{}",
        pod_security_lines(&metrics).join("\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn workload_in_a_missing_namespace_fails_open_with_an_error_annotation() {
    for mode in ["warn", "enforce"] {
        let server = workload_server(mode).await;
        for (group, kind, resource) in WORKLOADS {
            expect(
                &server,
                &workload_create(group, kind, resource, "ghost", &host_network_spec()),
                json!({
                    "allowed": true,
                    "auditAnnotations": {
                        "error": r#"failed to lookup namespace "ghost": namespaces "ghost" not found"#
                    }
                }),
                &format!("{mode}: {kind}"),
            )
            .await;
        }
        assert_metric(
            &metrics(&server).await,
            r#"pod_security_errors_total{fatal="true",request_operation="create",resource="controller",subresource=""} 8"#,
        );
        server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// §4.3 step 3: pods in a namespace that cannot be found

#[tokio::test]
async fn pod_in_a_missing_namespace_is_denied_with_an_internal_error() {
    let server = start("", snapshot(&[("present", &[])])).await;
    expect(
        &server,
        &pod_create("ghost", "web", restricted_spec()),
        json!({
            "allowed": false,
            "status": {
                "status": "Failure",
                "message": r#"Internal error occurred: failed to lookup namespace "ghost""#,
                "reason": "InternalError",
                "code": 500
            },
            "auditAnnotations": {"error": r#"namespaces "ghost" not found"#}
        }),
        "missing namespace",
    )
    .await;
    expect(
        &server,
        &pod_create("present", "web", host_network_spec()),
        json!({"allowed": true, "auditAnnotations": {"enforce-policy": "privileged:latest"}}),
        "an existing namespace",
    )
    .await;
    let metrics = metrics(&server).await;
    assert_metric(
        &metrics,
        r#"pod_security_errors_total{fatal="true",request_operation="create",resource="pod",subresource=""} 1"#,
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// §4.5: namespaces

fn invalid(message: &str) -> Value {
    json!({
        "allowed": false,
        "status": {"status": "Failure", "message": message, "reason": "Invalid", "code": 422}
    })
}

#[tokio::test]
async fn namespace_labels_are_validated() {
    let server = start("", Snapshot::default()).await;
    expect(
        &server,
        &namespace_review("CREATE", "x", &[("enforce", "foo")], None),
        invalid(
            r#"Namespace "x" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, baseline, restricted"#,
        ),
        "one invalid label",
    )
    .await;
    expect(
        &server,
        &namespace_review("CREATE", "x", &[("enforce", "foo"), ("warn-version", "v2.0")], None),
        invalid(concat!(
            r#"Namespace "x" is invalid: ["#,
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, baseline, restricted, "#,
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2.0": must be "latest" or "v1.x"]"#
        )),
        "two invalid labels",
    )
    .await;
    expect(
        &server,
        &namespace_review(
            "CREATE",
            "x",
            &[("enforce", "restricted"), ("warn-version", "v1.30")],
            None,
        ),
        allowed(),
        "valid labels",
    )
    .await;
    // Invalid labels already on the namespace are tolerated; new or changed ones are not.
    expect(
        &server,
        &namespace_review(
            "UPDATE",
            "x",
            &[("enforce", "foo"), ("audit", "baseline")],
            Some(&[("enforce", "foo")]),
        ),
        allowed(),
        "pre-existing invalid label",
    )
    .await;
    expect(
        &server,
        &namespace_review("UPDATE", "x", &[("enforce", "bar")], Some(&[("enforce", "foo")])),
        invalid(
            r#"Namespace "x" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bar": must be one of privileged, baseline, restricted"#,
        ),
        "changed invalid label",
    )
    .await;
    expect(
        &server,
        &namespace_review("UPDATE", "x", &[("enforce", "baseline"), ("audit", "loud")], Some(&[("enforce", "baseline")])),
        invalid(
            r#"Namespace "x" is invalid: metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "loud": must be one of privileged, baseline, restricted"#,
        ),
        "new invalid label",
    )
    .await;
    server.stop().await;
}

fn owned_pod(namespace: &str, name: &str, spec: Value, controller_uid: &str) -> Pod {
    let mut pod = typed_pod(namespace, name, spec);
    pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "ReplicaSet".to_owned(),
        name: format!("rs-{controller_uid}"),
        uid: controller_uid.to_owned(),
        controller: Some(true),
        ..Default::default()
    }]);
    pod
}

#[tokio::test]
async fn tightening_enforce_warns_about_existing_pods() {
    let config = r#"
podSecurity:
  exemptions:
    namespaces: ["exempt-ns"]
    runtimeClasses: ["kata"]
"#;
    let mut cluster = snapshot(&[("tighten", &[("enforce", "baseline")]), ("exempt-ns", &[])]);
    let mut privileged = restricted_spec();
    privileged["containers"][0]["securityContext"]["privileged"] = json!(true);
    let mut kata = host_network_spec();
    kata["runtimeClassName"] = json!("kata");
    // Inserted out of order: the group names its lexically first pod.
    for (name, spec) in [
        ("c-hostnet", host_network_spec()),
        ("a-hostnet", host_network_spec()),
        ("plain-2", plain_spec()),
        ("b-hostnet", host_network_spec()),
        ("zeta", privileged),
        ("plain-1", plain_spec()),
        ("good", restricted_spec()),
        // A violating pod of an exempt runtime class is not checked.
        ("aaa-kata", kata),
    ] {
        cluster.insert_pod(typed_pod("tighten", name, spec));
    }
    cluster.insert_pod(typed_pod("exempt-ns", "hostnet", host_network_spec()));
    let server = start(config, cluster).await;

    let existing_pod_warnings = json!({
        "allowed": true,
        "warnings": [
            r#"existing pods in namespace "tighten" violate the new PodSecurity enforce level "restricted:latest""#,
            format!("a-hostnet (and 2 other pods): host namespaces, {RESTRICTED_REASONS}"),
            format!("plain-1 (and 1 other pod): {RESTRICTED_REASONS}"),
            "zeta: privileged",
        ]
    });
    expect(
        &server,
        &namespace_review(
            "UPDATE",
            "tighten",
            &[("enforce", "restricted")],
            Some(&[("enforce", "baseline")]),
        ),
        existing_pod_warnings.clone(),
        "baseline → restricted",
    )
    .await;
    expect(
        &server,
        &namespace_review(
            "UPDATE",
            "tighten",
            &[("enforce", "restricted")],
            Some(&[("enforce", "restricted"), ("enforce-version", "v1.20")]),
        ),
        existing_pod_warnings,
        "restricted:v1.20 → restricted:latest (a version change is checked)",
    )
    .await;
    expect(
        &server,
        &namespace_review("UPDATE", "tighten", &[("enforce", "baseline")], Some(&[])),
        json!({
            "allowed": true,
            "warnings": [
                r#"existing pods in namespace "tighten" violate the new PodSecurity enforce level "baseline:latest""#,
                "a-hostnet (and 2 other pods): host namespaces",
                "zeta: privileged",
            ]
        }),
        "no labels → baseline",
    )
    .await;

    // Relaxed, unchanged or privileged enforce: no pods are checked.
    for (new, old, what) in [
        (
            &[("enforce", "baseline")][..],
            &[("enforce", "restricted")][..],
            "relaxed",
        ),
        (
            &[("enforce", "restricted"), ("audit", "restricted")][..],
            &[("enforce", "restricted")][..],
            "enforce unchanged",
        ),
        (
            &[("enforce", "privileged")][..],
            &[("enforce", "baseline")][..],
            "privileged",
        ),
        (
            &[("enforce", "baseline"), ("enforce-version", "latest")][..],
            &[("enforce", "baseline")][..],
            "same policy spelled differently",
        ),
    ] {
        expect(
            &server,
            &namespace_review("UPDATE", "tighten", new, Some(old)),
            allowed(),
            what,
        )
        .await;
    }

    // Creating a namespace never checks pods.
    expect(
        &server,
        &namespace_review("CREATE", "tighten", &[("enforce", "restricted")], None),
        allowed(),
        "create",
    )
    .await;

    // Exempt namespaces: a warning that the policy is ignored, and no pod checks.
    let ignored = json!({
        "allowed": true,
        "warnings": [
            r#"namespace "exempt-ns" is exempt from Pod Security, and the policy (enforce=restricted:latest, warn=baseline:latest) will be ignored"#
        ]
    });
    expect(
        &server,
        &namespace_review(
            "CREATE",
            "exempt-ns",
            &[("enforce", "restricted"), ("warn", "baseline")],
            None,
        ),
        ignored.clone(),
        "exempt create",
    )
    .await;
    expect(
        &server,
        &namespace_review(
            "UPDATE",
            "exempt-ns",
            &[("enforce", "restricted"), ("warn", "baseline")],
            Some(&[]),
        ),
        ignored,
        "exempt update tightening enforce",
    )
    .await;
    expect(
        &server,
        &namespace_review("UPDATE", "exempt-ns", &[("warn", "baseline")], Some(&[])),
        allowed(),
        "exempt update not tightening enforce",
    )
    .await;
    expect(
        &server,
        &namespace_review("CREATE", "exempt-ns", &[("enforce", "privileged")], None),
        allowed(),
        "exempt create, fully privileged",
    )
    .await;
    expect(
        &server,
        &namespace_review("CREATE", "exempt-ns", &[("enforce", "restricted")], None),
        json!({
            "allowed": true,
            "warnings": [
                r#"namespace "exempt-ns" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"#
            ]
        }),
        "exempt create: the defaulted warn level is not listed",
    )
    .await;
    server.stop().await;
}

/// A cluster whose namespaces can be read but whose pods cannot be listed.
struct NoPodList(Snapshot);

impl ClusterView for NoPodList {
    fn namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, ClusterError> {
        self.0.namespace(name)
    }

    fn pods(&self, _namespace: &str) -> Result<Vec<Arc<Pod>>, ClusterError> {
        Err(ClusterError::Unavailable(
            "pods are not readable".to_owned(),
        ))
    }

    fn gmsa_credential_spec(
        &self,
        name: &str,
    ) -> Result<Option<Arc<kadmit::core::cluster::GmsaCredentialSpec>>, ClusterError> {
        self.0.gmsa_credential_spec(name)
    }

    fn authorize(
        &self,
        request: &kadmit::core::cluster::AccessRequest,
        deadline: Option<std::time::Instant>,
    ) -> Result<kadmit::core::cluster::AccessDecision, ClusterError> {
        self.0.authorize(request, deadline)
    }
}

#[tokio::test]
async fn tightening_enforce_when_pods_cannot_be_listed_warns_so() {
    let server = TestServer::start(TestOptions {
        cluster: Arc::new(NoPodList(snapshot(&[("tighten", &[])]))),
        ..TestOptions::default()
    })
    .await;
    expect(
        &server,
        &namespace_review("UPDATE", "tighten", &[("enforce", "restricted")], Some(&[])),
        json!({
            "allowed": true,
            "warnings": ["failed to list pods while checking new PodSecurity enforce level"]
        }),
        "list failure",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn tightening_enforce_checks_at_most_3000_pods_one_per_controller_first() {
    let mut cluster = snapshot(&[("big", &[])]);
    let plain: PodSpec = serde_json::from_value(plain_spec()).unwrap();
    // 3001 replicas of one controller…
    for i in 0..3001 {
        cluster.insert_pod(Pod {
            metadata: ObjectMeta {
                name: Some(format!("rs-pod-{i:04}")),
                namespace: Some("big".to_owned()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".to_owned(),
                    kind: "ReplicaSet".to_owned(),
                    name: "rs".to_owned(),
                    uid: "uid-rs".to_owned(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(plain.clone()),
            ..Default::default()
        });
    }
    // …then three host-network pods: one bare, two of other controllers. They come after the
    // replicas in the list, but one pod per controller is checked first.
    cluster.insert_pod(typed_pod("big", "zz-hostnet-0", host_network_spec()));
    cluster.insert_pod(owned_pod(
        "big",
        "zz-hostnet-1",
        host_network_spec(),
        "uid-a",
    ));
    cluster.insert_pod(owned_pod(
        "big",
        "zz-hostnet-2",
        host_network_spec(),
        "uid-b",
    ));
    // A pod of an exempt runtime class is neither checked nor counted.
    let mut kata = host_network_spec();
    kata["runtimeClassName"] = json!("kata");
    cluster.insert_pod(typed_pod("big", "aaa-kata", kata));
    // A replica listed last, with its own violation: the cap cuts it, or its group would show.
    let mut unchecked_spec = plain_spec();
    unchecked_spec["hostPID"] = json!(true);
    let unchecked = owned_pod("big", "aaa-unchecked", unchecked_spec, "uid-rs");
    cluster.insert_pod(unchecked);

    let server = start(
        "podSecurity:\n  exemptions:\n    runtimeClasses: [kata]\n",
        cluster,
    )
    .await;
    // 3001 + 3 + 1 = 3005 pods counted; kata is not counted. Checked: rs-pod-0000, the three
    // zz pods, then the replicas rs-pod-0001..=rs-pod-2996; rs-pod-2997.. and aaa-unchecked not.
    expect(
        &server,
        &namespace_review("UPDATE", "big", &[("enforce", "restricted")], Some(&[])),
        json!({
            "allowed": true,
            "warnings": [
                "new PodSecurity enforce level only checked against the first 3000 of 3005 existing pods",
                r#"existing pods in namespace "big" violate the new PodSecurity enforce level "restricted:latest""#,
                format!("rs-pod-0000 (and 2996 other pods): {RESTRICTED_REASONS}"),
                format!("zz-hostnet-0 (and 2 other pods): host namespaces, {RESTRICTED_REASONS}"),
            ]
        }),
        "3000-pod cap",
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// §4.7: metrics

#[tokio::test]
async fn evaluations_are_counted_with_upstream_labels() {
    let server = start(
        "",
        snapshot(&[
            (
                "mixed",
                &[
                    ("enforce", "baseline"),
                    ("enforce-version", "v1.30"),
                    ("audit", "restricted"),
                    ("warn", "restricted"),
                ],
            ),
            (
                "future",
                &[("enforce", "baseline"), ("enforce-version", "v1.99")],
            ),
            ("open", &[]),
        ]),
    )
    .await;
    // Denied: enforce deny, audit deny, no warn (denied requests are not warned).
    send(
        &server,
        &pod_create("mixed", "hostnet", host_network_spec()),
    )
    .await;
    // Allowed: enforce allow, audit deny, warn deny.
    send(&server, &pod_create("mixed", "plain", plain_spec())).await;
    // Compliant: enforce allow only.
    send(&server, &pod_create("mixed", "good", restricted_spec())).await;
    // A version newer than kadmit knows.
    expect(
        &server,
        &pod_create("future", "hostnet", host_network_spec()),
        pod_forbidden(
            "hostnet",
            "baseline:v1.99",
            HOST_NETWORK,
            json!({"enforce-policy": "baseline:v1.99"}),
        ),
        "future version",
    )
    .await;
    // Fully privileged.
    send(&server, &pod_create("open", "hostnet", host_network_spec())).await;
    // A workload (warn mode): audit and warn only.
    send(&server, &deployment_create("mixed", &plain_spec())).await;

    let metrics = metrics(&server).await;
    let line = |decision: &str, level: &str, version: &str, mode: &str, resource: &str, n: u32| {
        format!(
            r#"pod_security_evaluations_total{{decision="{decision}",policy_level="{level}",policy_version="{version}",mode="{mode}",request_operation="create",resource="{resource}",subresource=""}} {n}"#
        )
    };
    let expected = [
        line("deny", "baseline", "v1.30", "enforce", "pod", 1),
        line("allow", "baseline", "v1.30", "enforce", "pod", 2),
        line("deny", "restricted", "latest", "audit", "pod", 2),
        line("deny", "restricted", "latest", "warn", "pod", 1),
        line("deny", "baseline", "future", "enforce", "pod", 1),
        line("allow", "privileged", "latest", "enforce", "pod", 1),
        line("deny", "restricted", "latest", "audit", "controller", 1),
        line("deny", "restricted", "latest", "warn", "controller", 1),
    ];
    for line in &expected {
        assert_metric(&metrics, line);
    }
    let evaluations: Vec<&str> = pod_security_lines(&metrics)
        .into_iter()
        .filter(|l| l.starts_with("pod_security_evaluations_total{"))
        .collect();
    assert_eq!(
        evaluations.len(),
        expected.len(),
        "no other evaluation series (audit and warn record only denials):\n{}",
        evaluations.join("\n")
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Known gaps: behaviour the spec describes that the implementation does not have yet.

/// §4.6: an enforce denial's status is Forbidden with details `{group: "", kind: "pods", name}`.
#[tokio::test]
async fn pod_denial_status_has_forbidden_details() {
    let server = start("", snapshot(&[("strict", &[("enforce", "restricted")])])).await;
    let response = send(&server, &pod_create("strict", "plain", plain_spec())).await;
    assert_eq!(response["status"]["code"], 403, "{response}");
    // metav1.StatusDetails omits empty fields, so the core group may be absent or "".
    let details = &response["status"]["details"];
    assert_eq!(details["kind"], "pods", "{response}");
    assert_eq!(details["name"], "plain", "{response}");
    assert!(details.get("group").is_none_or(|g| g == ""), "{response}");
    server.stop().await;
}
