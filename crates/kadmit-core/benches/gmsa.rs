//! GMSA costs with warm caches (a snapshot: specs and RBAC in memory): mutate and validate of a
//! pod with a pod-level and two container-level references.
//!
//!     cargo bench -p kadmit-core --bench gmsa
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator the server runs with (`src/main.rs`), so figures match what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, criterion_group, criterion_main};
use kadmit_core::cluster::Snapshot;
use kadmit_core::{Config, Endpoint, Pipeline, Review};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: webapp0}
credspec:
  ActiveDirectoryConfig:
    GroupManagedServiceAccounts:
    - {Name: WebApplication0, Scope: CONTOSO}
    - {Name: WebApplication0, Scope: contoso.com}
  CmsPlugins: [ActiveDirectory]
  DomainJoinConfig: {DnsName: contoso.com, DnsTreeName: contoso.com, Guid: 244818ae-87ca-4fcd-92ec-e79e5252348a, MachineAccountName: WebApplication0, NetBiosName: CONTOSO, Sid: S-1-5-21-2126729477-2524075714-3094792973}
---
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: webapp1}
credspec:
  CmsPlugins: [ActiveDirectory]
  DomainJoinConfig: {DnsName: contoso.com, MachineAccountName: WebApplication1}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gmsa-users}
rules:
- apiGroups: [windows.k8s.io]
  resources: [gmsacredentialspecs]
  verbs: [use]
  resourceNames: [webapp0, webapp1]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: gmsa-users, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gmsa-users}
subjects:
- {kind: ServiceAccount, name: web, namespace: shop}
"#;

/// A pod CREATE that names specs at pod level and in two containers, without contents.
fn review() -> Vec<u8> {
    let options = |name: &str| serde_json::json!({"gmsaCredentialSpecName": name});
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "serviceAccountName": "web",
                    "securityContext": {"windowsOptions": options("webapp0")},
                    "containers": [
                        {"name": "a", "image": "mcr.microsoft.com/windows/servercore", "securityContext": {"windowsOptions": options("webapp0")}},
                        {"name": "b", "image": "mcr.microsoft.com/windows/servercore", "securityContext": {"windowsOptions": options("webapp1")}}
                    ]}}
        }
    }))
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let cluster = Snapshot::parse(CLUSTER).unwrap();
    let mut config = Config::default();
    config.pod_security.enabled = false;
    let pipeline = Pipeline::from_config(&config);

    let mutate_body = review();
    let mutated = {
        let review = Review::from_slice(&mutate_body).unwrap();
        let decision = pipeline.evaluate(Endpoint::Mutate, &review, &cluster);
        assert_eq!(decision.response.patch.len(), 3, "{:?}", decision.response);
        decision
    };
    // The validate input: the pod as the mutation left it.
    let mut patched: serde_json::Value = serde_json::from_slice(&mutate_body).unwrap();
    json_patch::patch(&mut patched["request"]["object"], &mutated.response.patch).unwrap();
    let validate_body = serde_json::to_vec(&patched).unwrap();
    {
        let review = Review::from_slice(&validate_body).unwrap();
        let decision = pipeline.evaluate(Endpoint::Validate, &review, &cluster);
        assert!(decision.response.allowed, "{:?}", decision.response);
    }

    c.bench_function(
        "gmsa mutate: pod + 2 containers, warm caches (decode included)",
        |b| {
            b.iter(|| {
                let review = Review::from_slice(&mutate_body).unwrap();
                pipeline.evaluate(Endpoint::Mutate, &review, &cluster)
            })
        },
    );
    c.bench_function(
        "gmsa validate: pod + 2 containers, warm caches (decode included)",
        |b| {
            b.iter(|| {
                let review = Review::from_slice(&validate_body).unwrap();
                pipeline.evaluate(Endpoint::Validate, &review, &cluster)
            })
        },
    );
}

criterion_group!(gmsa, benches);
criterion_main!(gmsa);
