//! The in-process figures of issue 8: the bench review through every policy, exactly as
//! `scripts/bench-load.sh` configures the server (`scripts/bench-full-policies.yaml`,
//! `scripts/bench-cluster.yaml`): Pod Security restricted in enforce, audit and warn; GMSA;
//! default resources from a LimitRange and a cluster rule; pull secrets by image rule; security
//! defaults.
//!
//! - `decode`: the body to a `Review` with its object decoded (what every request pays).
//! - `full validate`: decode, every policy, and the answer's JSON, for the review as published
//!   (it passes restricted).
//! - `full mutate`: the same on `/mutate` for the review without its containers'
//!   securityContexts, so that every defaulting policy patches (resources, pull secrets,
//!   security defaults; GMSA has nothing to expand).
//!
//! Both decode the review for their endpoint (`Review::from_slice_for`), as the server does.
//!
//!     cargo bench -p kadmit-core --bench full
//!
//! Reads `../shared` (or `$KADMIT_SHARED_DIR`); without it the benchmark is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator the server runs with (`src/main.rs`), so figures match what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::path::Path;

use common::shared;
use criterion::{Criterion, criterion_group, criterion_main};
use kadmit_core::cluster::Snapshot;
use kadmit_core::{Config, Endpoint, Pipeline, Review};

fn benches(c: &mut Criterion) {
    let Some(shared) = shared() else { return };
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let config = std::fs::read_to_string(scripts.join("bench-full-policies.yaml")).unwrap();
    let cluster = std::fs::read_to_string(scripts.join("bench-cluster.yaml")).unwrap();
    let pipeline = Pipeline::from_config(&Config::from_yaml(&config).unwrap());
    let cluster = Snapshot::parse(&cluster).unwrap();
    assert_eq!(
        pipeline.policy_names(),
        [
            "pod-security",
            "gmsa",
            "default-resources",
            "image-pull-secrets",
            "security-defaults"
        ]
    );

    let body = std::fs::read(shared.join("bench/pod-review.json")).unwrap();
    let bare = common::without_security_contexts(&body);

    // What is measured must be what is claimed.
    let review = Review::from_slice(&body).unwrap();
    assert!(review.decoded_objects().is_some(), "decoded in one pass");
    let validated = pipeline.evaluate(Endpoint::Validate, &review, &cluster);
    assert!(validated.response.allowed && validated.errors.is_empty());
    let review = Review::from_slice_for(&bare, Endpoint::Mutate).unwrap();
    let mutated = pipeline.evaluate(Endpoint::Mutate, &review, &cluster);
    let patched: Vec<&str> = mutated
        .response
        .audit_annotations
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        patched,
        [
            "default-resources",
            "image-pull-secrets",
            "security-defaults"
        ]
    );

    c.bench_function("decode: bench review", |b| {
        b.iter(|| Review::from_slice(&body).unwrap())
    });
    for (name, endpoint, body) in [
        ("full validate: bench review", Endpoint::Validate, &body),
        (
            "full mutate: bench review without securityContexts (every defaulting policy patches)",
            Endpoint::Mutate,
            &bare,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let review = Review::from_slice_for(body, endpoint).unwrap();
                let decision = pipeline.evaluate(endpoint, &review, &cluster);
                decision.response.to_review_json(review.version)
            })
        });
    }
}

criterion_group!(group, benches);
criterion_main!(group);
