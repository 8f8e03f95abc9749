//! The whole `/mutate` pipeline on the bench review (`../shared/bench/pod-review.json`): decoding,
//! then default resources (a LimitRange and a cluster rule), pull secrets by image rule and
//! security defaults, each producing part of the patch, and GMSA (nothing to expand).
//!
//!     cargo bench -p kadmit-core --bench mutate
//!
//! Reads `../shared` (or `$KADMIT_SHARED_DIR`); without it the benchmark is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

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

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("KADMIT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: {} is absent", dir.display());
        None
    }
}

fn benches(c: &mut Criterion) {
    let Some(shared) = shared() else { return };
    let body = std::fs::read(shared.join("bench/pod-review.json")).unwrap();
    let pipeline = Pipeline::from_config(&Config::from_yaml(CONFIG).unwrap());
    let cluster = Snapshot::parse(CLUSTER).unwrap();

    // What is measured must be what is claimed: every defaulting policy patches this pod.
    let review = Review::from_slice(&body).unwrap();
    let decision = pipeline.evaluate(Endpoint::Mutate, &review, &cluster);
    for policy in [
        "default-resources",
        "image-pull-secrets",
        "security-defaults",
    ] {
        assert!(
            decision.response.audit_annotations.contains_key(policy),
            "{policy} did not patch the bench pod: {:?}",
            decision.response
        );
    }

    c.bench_function(
        "mutate pipeline: decode + every defaulting policy (bench review)",
        |b| {
            b.iter(|| {
                let review = Review::from_slice(&body).unwrap();
                pipeline.evaluate(Endpoint::Mutate, &review, &cluster)
            })
        },
    );
}

criterion_group!(group, benches);
criterion_main!(group);
