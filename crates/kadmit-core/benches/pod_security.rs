//! Pod Security costs: one pod at restricted/latest (the check evaluator alone, and the whole
//! validate pipeline on the bench review), and `kadmit check`'s path over every upstream fixture.
//!
//!     cargo bench -p kadmit-core --bench pod_security
//!
//! Reads `../shared` (or `$KADMIT_SHARED_DIR`); without it the benchmarks that need it are skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator the server runs with (`src/main.rs`), so figures match what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use common::shared;
use criterion::{Criterion, criterion_group, criterion_main};
use kadmit_core::cluster::Snapshot;
use kadmit_core::config::{Level, PolicyVersion};
use kadmit_core::manifest::{check_pod_security, read_manifest};
use kadmit_core::policy::pod_security::checks::evaluate;
use kadmit_core::{Config, Endpoint, Pipeline, Review};

fn benches(c: &mut Criterion) {
    let Some(shared) = shared() else { return };
    let body = std::fs::read(shared.join("bench/pod-review.json")).unwrap();
    let review = Review::from_slice(&body).unwrap();
    // The review's pod as every request decodes it (the one-pass decoder keeps no raw object).
    let pod = review
        .decoded_objects()
        .and_then(|d| d.object.as_ref())
        .and_then(|o| o.as_pod())
        .unwrap()
        .clone();
    let spec = pod.spec.clone().unwrap();
    c.bench_function("checks: bench pod at restricted/latest", |b| {
        b.iter(|| {
            evaluate(
                Level::Restricted,
                PolicyVersion::Latest,
                &pod.metadata,
                &spec,
            )
        })
    });

    let mut config = Config::default();
    config.pod_security.defaults.enforce = Level::Restricted;
    config.pod_security.defaults.audit = Level::Restricted;
    config.pod_security.defaults.warn = Level::Restricted;
    let pipeline = Pipeline::from_config(&config);
    let cluster = Snapshot::dev();
    c.bench_function(
        "validate pipeline: decode + Pod Security restricted (bench review)",
        |b| {
            b.iter(|| {
                let review = Review::from_slice(&body).unwrap();
                pipeline.evaluate(Endpoint::Validate, &review, &cluster)
            })
        },
    );

    // The whole fixture corpus, as `kadmit check` reads it (minus the file system).
    let psa = shared.join("conformance/psa");
    let index = std::fs::read_to_string(psa.join("index.tsv")).unwrap();
    let fixtures: Vec<(Level, PolicyVersion, String)> = index
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let level = if cols[0] == "baseline" {
                Level::Baseline
            } else {
                Level::Restricted
            };
            let text = std::fs::read_to_string(psa.join("testdata").join(cols[3])).unwrap();
            (level, PolicyVersion::parse(cols[1]).unwrap(), text)
        })
        .collect();
    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    group.bench_function(
        "all 4537 fixtures: read + default + evaluate + message",
        |b| {
            b.iter(|| {
                let mut denied = 0;
                for (level, version, text) in &fixtures {
                    for object in read_manifest(text) {
                        let result = check_pod_security(&object.unwrap().value, *level, *version)
                            .unwrap()
                            .unwrap();
                        denied += usize::from(result.verdict.message.is_some());
                    }
                }
                assert_eq!(denied, 3486);
                denied
            })
        },
    );
    group.finish();
}

criterion_group!(pod_security, benches);
criterion_main!(pod_security);
