//! Per-request cost as the cluster grows: the whole pipeline (mutation, then validation of the
//! mutated object, every policy on: `scripts/bench-full-policies.yaml`) on the bench review,
//! against a snapshot holding only the review's namespace and against one that also holds
//! 10 000 namespaces, 10 000 LimitRanges, 50 000 Secrets, 10 000 ServiceAccounts and 1 000 GMSA
//! credential specs. The two figures should match: lookups are by key, never by scanning.
//!
//!     cargo bench -p kadmit-core --bench scale
//!
//! Reads `../shared` (or `$KADMIT_SHARED_DIR`); without it the benchmark is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator the server runs with (`src/main.rs`), so figures match what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

mod common;

use common::shared;
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{LimitRange, Namespace};
use kadmit_core::cluster::{GmsaCredentialSpec, Snapshot};
use kadmit_core::{Config, Endpoint, Pipeline, Review};

fn namespace(name: &str, team: usize) -> Namespace {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/metadata.name": name, "team": format!("team-{team}"),
            "pod-security.kubernetes.io/enforce": "restricted"}}
    }))
    .unwrap()
}

fn limit_range(namespace: &str) -> LimitRange {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "limits", "namespace": namespace},
        "spec": {"limits": [{"type": "Container",
            "default": {"ephemeral-storage": "1Gi"}, "defaultRequest": {"ephemeral-storage": "512Mi"}}]}
    }))
    .unwrap()
}

/// The bench review's namespace with its LimitRange and pull secret, plus `extra` more
/// namespaces with a LimitRange, five Secrets and a ServiceAccount each, and a GMSA spec for
/// every tenth.
fn cluster(extra: usize) -> Snapshot {
    let mut snapshot = Snapshot::empty();
    snapshot.insert_namespace(namespace("shop", 0));
    snapshot.insert_limit_range(limit_range("shop"));
    snapshot.insert_secret("shop", "regcred");
    for i in 0..extra {
        let name = format!("ns-{i:05}");
        snapshot.insert_namespace(namespace(&name, i % 100));
        snapshot.insert_limit_range(limit_range(&name));
        for s in 0..5 {
            snapshot.insert_secret(&name, &format!("secret-{s}"));
        }
        snapshot.insert_service_account(&name, "default");
        if i % 10 == 0 {
            snapshot.insert_gmsa_credential_spec(GmsaCredentialSpec {
                name: format!("gmsa-{i:05}"),
                credspec: Some(serde_json::json!({"CmsPlugins": ["ActiveDirectory"]})),
            });
        }
    }
    snapshot
}

fn benches(c: &mut Criterion) {
    let Some(shared) = shared() else { return };
    let body = std::fs::read(shared.join("bench/pod-review.json")).unwrap();
    let config = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-full-policies.yaml"),
    )
    .unwrap();
    let pipeline = Pipeline::from_config(&Config::from_yaml(&config).unwrap());
    for (name, snapshot) in [
        ("the review's namespace only", cluster(0)),
        (
            "+10k namespaces, 10k LimitRanges, 50k Secrets, 10k SAs, 1k GMSA specs",
            cluster(10_000),
        ),
    ] {
        // The same answer either way: allowed, patched by the defaulting policies; the patched
        // review (what the API server sends to /validate next) passes.
        let review = Review::from_slice_for(&body, Endpoint::Mutate).unwrap();
        let mutated = pipeline.evaluate(Endpoint::Mutate, &review, &snapshot);
        assert!(mutated.response.allowed && !mutated.response.patch.is_empty());
        let patched = patched_body(&body, &mutated.response.patch);
        let review = Review::from_slice_for(&patched, Endpoint::Validate).unwrap();
        let validated = pipeline.evaluate(Endpoint::Validate, &review, &snapshot);
        assert!(validated.response.allowed, "{:?}", validated.response);

        // Both requests as the server handles them: decode for the endpoint, every policy, the
        // answer's JSON.
        c.bench_function(&format!("mutate + validate, every policy: {name}"), |b| {
            b.iter(|| {
                [(Endpoint::Mutate, &body), (Endpoint::Validate, &patched)].map(
                    |(endpoint, body)| {
                        let review = Review::from_slice_for(body, endpoint).unwrap();
                        let decision = pipeline.evaluate(endpoint, &review, &snapshot);
                        decision.response.to_review_json(review.version)
                    },
                )
            })
        });
    }
}

/// The review `body` with `patch` applied to its object, as the API server sends it on.
fn patched_body(body: &[u8], patch: &[json_patch::PatchOperation]) -> Vec<u8> {
    let mut review: serde_json::Value = serde_json::from_slice(body).unwrap();
    json_patch::patch(&mut review["request"]["object"], patch).unwrap();
    serde_json::to_vec(&review).unwrap()
}

criterion_group!(group, benches);
criterion_main!(group);
