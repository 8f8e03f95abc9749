//! Every upstream Pod Security fixture (`../shared/conformance/psa/index.tsv`) evaluated at its
//! level and version through `kadmit check`'s code path (manifest reader, defaulting, checks,
//! message): pass fixtures allowed, fail fixtures denied with a message containing upstream's
//! expected substring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use kadmit_core::config::{Level, PolicyVersion};
use kadmit_core::manifest::{check_pod_security, read_manifest};

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("KADMIT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED psa fixtures: {} is absent (set KADMIT_SHARED_DIR)",
            dir.display()
        );
        None
    }
}

#[test]
fn every_fixture_gets_upstreams_verdict() {
    let Some(shared) = shared() else { return };
    let psa = shared.join("conformance/psa");
    let index = std::fs::read_to_string(psa.join("index.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut rows = 0;
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [level, version, _kind, path, expect, substring] = cols[..] else {
            panic!("bad index row {line:?}");
        };
        rows += 1;
        let level = match level {
            "baseline" => Level::Baseline,
            "restricted" => Level::Restricted,
            other => panic!("level {other}"),
        };
        let version = PolicyVersion::parse(version).unwrap();
        let text = std::fs::read_to_string(psa.join("testdata").join(path)).unwrap();
        let objects = read_manifest(&text);
        assert_eq!(objects.len(), 1, "{path}");
        let object = objects.into_iter().next().unwrap().unwrap();
        let result = check_pod_security(&object.value, level, version)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .unwrap_or_else(|| panic!("{path}: not checked"));
        let violations = result.verdict.violations;
        let message = result.verdict.message.unwrap_or_default();
        match expect {
            "allow" if !violations.is_empty() => {
                failures.push(format!("{path}: expected allow, got {message}"))
            }
            "deny" if violations.is_empty() => {
                failures.push(format!("{path}: expected deny, got allow"))
            }
            "deny" if !message.contains(substring) => {
                failures.push(format!("{path}: message lacks {substring:?}: {message}"))
            }
            "deny" if message.contains("unknown forbidden reason") => {
                failures.push(format!("{path}: unknown forbidden reason: {message}"))
            }
            _ => {}
        }
    }
    println!("{} of {rows} fixtures as upstream", rows - failures.len());
    assert_eq!(rows, 4537, "index.tsv should list 4537 fixtures");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
