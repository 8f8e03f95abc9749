//! The whole `/mutate` pipeline on the bench review (`../shared/bench/pod-review.json`): decoding,
//! then default resources (a LimitRange and a cluster rule), pull secrets by image rule and
//! security defaults, and GMSA (nothing to expand).
//!
//! The bench pod already sets every security default, so it is measured twice: as published
//! (resources and pull secrets patch it; security defaults find nothing to do) and with its
//! containers' `securityContext` removed, so that every defaulting policy contributes.
//!
//! Each defaulting policy is also measured alone (Pod Security and GMSA off), on a review decoded
//! once outside the loop: the policy's own work and its share of the patch (working copy, diff),
//! without decoding or the answer's JSON.
//!
//!     cargo bench -p kadmit-core --bench mutate
//!
//! Reads `../shared` (or `$KADMIT_SHARED_DIR`); without it the benchmark is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator the server runs with (`src/main.rs`), so figures match what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use common::shared;
use criterion::{Criterion, criterion_group, criterion_main};
use kadmit_core::cluster::Snapshot;
use kadmit_core::{Config, Endpoint, Pipeline, Review};

const CONFIG: &str = r#"
defaultResources:
  rules:
  - namespaceSelector: {}
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m, memory: 128Mi}
imagePullSecrets:
  rules:
  - images: ["registry.example.com/*"]
    secrets: [regcred]
  - images: ["docker.io/*"]
    secrets: [hub]
securityDefaults:
  enabled: true
  dropAllCapabilities: true
mutationSummary: both
"#;

const CLUSTER: &str = r#"
kind: Namespace
apiVersion: v1
metadata: {name: shop, labels: {kubernetes.io/metadata.name: shop}}
---
kind: LimitRange
apiVersion: v1
metadata: {name: limits, namespace: shop}
spec:
  limits:
  - {type: Container, default: {ephemeral-storage: 1Gi}, defaultRequest: {ephemeral-storage: 512Mi}}
---
kind: Secret
apiVersion: v1
metadata: {name: regcred, namespace: shop}
"#;

fn benches(c: &mut Criterion) {
    let Some(shared) = shared() else { return };
    let body = std::fs::read(shared.join("bench/pod-review.json")).unwrap();
    let pipeline = Pipeline::from_config(&Config::from_yaml(CONFIG).unwrap());
    let cluster = Snapshot::parse(CLUSTER).unwrap();

    let bare = common::without_security_contexts(&body);

    // What is measured must be what is claimed: which policies patch each variant.
    let variants = [
        (
            "mutate pipeline: bench review (resources and pull secrets patch)",
            &body,
            &["default-resources", "image-pull-secrets"][..],
        ),
        (
            "mutate pipeline: bench review without securityContexts (all three patch)",
            &bare,
            &[
                "default-resources",
                "image-pull-secrets",
                "security-defaults",
            ][..],
        ),
    ];
    for (name, body, patching) in variants {
        let review = Review::from_slice(body).unwrap();
        let decision = pipeline.evaluate(Endpoint::Mutate, &review, &cluster);
        let patched: Vec<&str> = decision
            .response
            .audit_annotations
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(patched, patching, "{name}: {:?}", decision.response);
        c.bench_function(name, |b| {
            b.iter(|| {
                let review = Review::from_slice(body).unwrap();
                pipeline.evaluate(Endpoint::Mutate, &review, &cluster)
            })
        });
    }

    let review = Review::from_slice_for(&bare, Endpoint::Mutate).unwrap();
    for (policy, section) in [
        ("default-resources", "defaultResources"),
        ("image-pull-secrets", "imagePullSecrets"),
        ("security-defaults", "securityDefaults"),
    ] {
        let pipeline = Pipeline::from_config(&Config::from_yaml(&alone(section)).unwrap());
        assert_eq!(pipeline.policy_names(), [policy]);
        let decision = pipeline.evaluate(Endpoint::Mutate, &review, &cluster);
        assert!(
            !decision.response.patch.is_empty(),
            "{policy}: {:?}",
            decision.response
        );
        c.bench_function(
            &format!("{policy} alone: bench review without securityContexts, decoded once"),
            |b| b.iter(|| pipeline.evaluate(Endpoint::Mutate, &review, &cluster)),
        );
    }
}

/// [`CONFIG`] with only its `section` on (the policies on by default turned off: Pod Security,
/// GMSA, and LimitRange defaults).
fn alone(section: &str) -> String {
    let mut config: serde_json::Value = serde_yaml_ng::from_str(CONFIG).unwrap();
    let config = config.as_object_mut().unwrap();
    config.retain(|key, _| key == section || key == "mutationSummary");
    config.insert("podSecurity".into(), serde_json::json!({"enabled": false}));
    config.insert("gmsa".into(), serde_json::json!({"enabled": false}));
    if section != "defaultResources" {
        config.insert(
            "defaultResources".into(),
            serde_json::json!({"limitRanges": false}),
        );
    }
    serde_json::to_string(config).unwrap()
}

criterion_group!(group, benches);
criterion_main!(group);
