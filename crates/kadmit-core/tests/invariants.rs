//! The promises of `kadmit_core::invariants` over real input: every published review in
//! `../shared/conformance/reviews`, every upstream Pod Security fixture (as a review and as a
//! manifest), and the inputs fuzzing found (`fuzz/regressions/`), under the default
//! configuration and with every policy on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kadmit_core::cluster::Snapshot;
use kadmit_core::invariants::{Exercised, check_manifest, check_review, pod_review_body};
use kadmit_core::{Config, Pipeline};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("KADMIT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED {test}: {} is absent (set KADMIT_SHARED_DIR)",
            dir.display()
        );
        None
    }
}

/// The default configuration on the dev snapshot, and every policy on
/// (`scripts/bench-full-policies.yaml` on `scripts/bench-cluster.yaml`).
fn setups() -> Vec<(&'static str, Pipeline, Snapshot)> {
    let read = |path: &str| std::fs::read_to_string(repo().join(path)).unwrap();
    vec![
        (
            "default",
            Pipeline::from_config(&Config::default()),
            Snapshot::dev(),
        ),
        (
            "every policy",
            Pipeline::from_config(
                &Config::from_yaml(&read("scripts/bench-full-policies.yaml")).unwrap(),
            ),
            Snapshot::parse(&read("scripts/bench-cluster.yaml")).unwrap(),
        ),
    ]
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn published_reviews_keep_every_promise() {
    let Some(shared) = shared("published_reviews_keep_every_promise") else {
        return;
    };
    let mut reviews = Vec::new();
    files(&shared.join("conformance/reviews"), &mut reviews);
    reviews.retain(|p| p.extension().is_some_and(|e| e == "json"));
    assert!(reviews.len() > 100, "{} reviews", reviews.len());
    for (name, pipeline, cluster) in setups() {
        let mut seen = Tally::default();
        for path in &reviews {
            let body = std::fs::read(path).unwrap();
            match check_review(&pipeline, &cluster, &body) {
                Ok(exercised) => seen.add(exercised),
                Err(violation) => panic!("{name}: {}: {violation}", path.display()),
            }
        }
        println!("{name}: {seen:?}");
        assert!(seen.decoded > 60 && seen.denied > 0, "{name}: {seen:?}");
        if name == "every policy" {
            assert!(seen.patched > 10, "{name}: {seen:?}");
        }
    }
}

#[test]
fn pod_security_fixtures_keep_every_promise() {
    let Some(shared) = shared("pod_security_fixtures_keep_every_promise") else {
        return;
    };
    let mut fixtures = Vec::new();
    files(&shared.join("conformance/psa/testdata"), &mut fixtures);
    fixtures.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    assert!(fixtures.len() > 4000, "{} fixtures", fixtures.len());
    let setups = setups();
    let mut seen = [Tally::default(), Tally::default()];
    for path in &fixtures {
        let text = std::fs::read_to_string(path).unwrap();
        if let Err(violation) = check_manifest(&text) {
            panic!("{}: {violation}", path.display());
        }
        let pod: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "fixture",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "fixture"},
                "object": pod,
            }
        });
        let body = serde_json::to_vec(&review).unwrap();
        for ((name, pipeline, cluster), seen) in setups.iter().zip(&mut seen) {
            match check_review(pipeline, cluster, &body) {
                Ok(exercised) => seen.add(exercised),
                Err(violation) => panic!("{name}: {}: {violation}", path.display()),
            }
        }
    }
    println!("{seen:?}");
    // Every fixture decodes; restricted (every policy) denies the baseline and restricted
    // failures; every policy on patches nearly every pod.
    assert_eq!(seen[0].decoded, fixtures.len());
    assert!(seen[1].denied > 1000, "{seen:?}");
    assert!(seen[1].patched > 1000, "{seen:?}");
}

/// How many checked reviews exercised each promise.
#[derive(Debug, Default)]
struct Tally {
    decoded: usize,
    denied: usize,
    patched: usize,
}

impl Tally {
    fn add(&mut self, exercised: Exercised) {
        self.decoded += usize::from(exercised.decoded);
        self.denied += usize::from(exercised.denied);
        self.patched += usize::from(exercised.patched);
    }
}

/// Inputs fuzzing found (`scripts/fuzz.sh`), one file each, named for what they broke.
#[test]
fn fuzz_regressions_keep_every_promise() {
    let dir = repo().join("fuzz/regressions");
    let setups = setups();
    let mut checked = 0;
    for target in ["review", "pod", "manifest"] {
        let mut inputs = Vec::new();
        files(&dir.join(target), &mut inputs);
        inputs.retain(|p| {
            p.file_name()
                .is_some_and(|n| n != "README.md" && n != ".gitkeep")
        });
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            match target {
                "review" => {
                    for (name, pipeline, cluster) in &setups {
                        if let Err(violation) = check_review(pipeline, cluster, &data) {
                            panic!("{name}: {}: {violation}", path.display());
                        }
                    }
                }
                "pod" => {
                    let Ok(object) = std::str::from_utf8(&data) else {
                        continue;
                    };
                    for update in [false, true] {
                        let body = pod_review_body(object, update);
                        for (name, pipeline, cluster) in &setups {
                            if let Err(violation) = check_review(pipeline, cluster, body.as_bytes())
                            {
                                panic!("{name}: {} (update {update}): {violation}", path.display());
                            }
                        }
                    }
                }
                _ => {
                    if let Ok(text) = std::str::from_utf8(&data)
                        && let Err(violation) = check_manifest(text)
                    {
                        panic!("{}: {violation}", path.display());
                    }
                }
            }
            checked += 1;
        }
    }
    println!("{checked} fuzz regression inputs checked");
}
