//! The upstream Pod Security fixtures that fail `restricted` (v1.37) only because of seccomp,
//! `allowPrivilegeEscalation` or capabilities, run through the `security-defaults` mutation
//! (every default on) as a Pod CREATE: each pod whose failing fields are merely unset must pass
//! `restricted` after the patch; pods whose failing values are explicit (`Unconfined`,
//! `allowPrivilegeEscalation: true`, a `drop` without `ALL`, added capabilities) are left as
//! they are, so they still fail, and are counted separately.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use kadmit_core::cluster::Snapshot;
use kadmit_core::config::{
    Level, MutationSummary, OnError, PolicyVersion, SeccompDefault, SecurityDefaultsConfig,
};
use kadmit_core::manifest::{check_pod_security, read_manifest};
use kadmit_core::policy::security_defaults::SecurityDefaults;
use kadmit_core::{Endpoint, Pipeline, Review};
use serde_json::{Value, json};

/// The restricted checks the defaults address (their upstream IDs).
const DEFAULTED_CHECKS: [&str; 3] = [
    "seccompProfile_restricted",
    "allowPrivilegeEscalation",
    "capabilities_restricted",
];

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("KADMIT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED security defaults fixtures: {} is absent (set KADMIT_SHARED_DIR)",
            dir.display()
        );
        None
    }
}

/// The check IDs `pod` fails at restricted/v1.37, through `kadmit check`'s code path.
fn restricted_violations(pod: &Value) -> Vec<&'static str> {
    let version = PolicyVersion::parse("v1.37").unwrap();
    check_pod_security(pod, Level::Restricted, version)
        .unwrap()
        .expect("a pod is checked")
        .verdict
        .violations
        .iter()
        .map(|v| v.check)
        .collect()
}

/// The pod's containers of all three lists.
fn containers(pod: &Value) -> Vec<&Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .collect()
}

/// The kinds of explicit values in `pod` that fail `restricted` and that the defaults rightly
/// leave alone, described, sorted and de-duplicated; empty when every failing field of these checks is merely unset. Read from
/// the pod itself, independently of the policy's code.
fn explicit_failures(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let good_profile = |t: &Value| t == "RuntimeDefault" || t == "Localhost";
    let pod_profile = &pod["spec"]["securityContext"]["seccompProfile"]["type"];
    if !pod_profile.is_null() && !good_profile(pod_profile) {
        out.push(format!("seccompProfile {pod_profile}"));
    }
    if pod["metadata"]["annotations"]["seccomp.security.alpha.kubernetes.io/pod"].is_string() {
        out.push("legacy pod seccomp annotation".to_owned());
    }
    for c in containers(pod) {
        let sc = &c["securityContext"];
        let profile = &sc["seccompProfile"]["type"];
        if !profile.is_null() && !good_profile(profile) {
            out.push(format!("seccompProfile {profile}"));
        }
        if sc["allowPrivilegeEscalation"] == true {
            out.push("allowPrivilegeEscalation true".to_owned());
        }
        let drop = sc["capabilities"]["drop"].as_array();
        if drop.is_some_and(|d| !d.is_empty() && !d.iter().any(|cap| cap == "ALL")) {
            out.push("capabilities.drop without ALL".to_owned());
        }
        let added = sc["capabilities"]["add"].as_array().into_iter().flatten();
        if added.into_iter().any(|cap| cap != "NET_BIND_SERVICE") {
            out.push("capabilities.add beyond NET_BIND_SERVICE".to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The `security-defaults` mutation (all three defaults on) of `pod` as a Pod CREATE, through
/// the pipeline: the patched pod, or `None` when there was no patch.
fn mutate(pipeline: &Pipeline, pod: &Value) -> Option<Value> {
    let review = Review::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "fixture",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "fixture"},
            "object": pod,
        }
    }))
    .unwrap();
    let decision = pipeline.evaluate(Endpoint::Mutate, &review, &Snapshot::default());
    assert!(decision.response.allowed, "{:?}", decision.response);
    assert!(decision.errors.is_empty(), "{:?}", decision.errors);
    let patch = decision.response.patch;
    if patch.is_empty() {
        return None;
    }
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    Some(patched)
}

#[test]
fn fixtures_failing_only_for_unset_fields_pass_restricted_after_mutation() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("conformance/psa/testdata/restricted/v1.37/fail");
    let pipeline = Pipeline::new(
        vec![Arc::new(SecurityDefaults::new(
            SecurityDefaultsConfig {
                enabled: true,
                seccomp_profile: Some(SeccompDefault::RuntimeDefault),
                allow_privilege_escalation: Some(false),
                drop_all_capabilities: true,
                ..SecurityDefaultsConfig::default()
            },
            MutationSummary::None,
        ))],
        OnError::Deny,
    );
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();

    let mut selected = 0;
    let mut fixed = Vec::new();
    let mut explicit = Vec::new();
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let objects = read_manifest(&text);
        assert_eq!(objects.len(), 1, "{name}");
        let pod = objects.into_iter().next().unwrap().unwrap().value;
        let before = restricted_violations(&pod);
        assert!(
            !before.is_empty(),
            "{name}: a fail fixture passes restricted"
        );
        if !before.iter().all(|check| DEFAULTED_CHECKS.contains(check)) {
            continue;
        }
        selected += 1;
        let reasons = explicit_failures(&pod);
        let patched = mutate(&pipeline, &pod);
        let after = patched
            .as_ref()
            .map_or_else(|| before.clone(), |patched| restricted_violations(patched));
        if let Some(patched) = &patched
            && let Some(again) = mutate(&pipeline, patched)
        {
            failures.push(format!("{name}: a second pass patched again: {again}"));
        }
        if reasons.is_empty() {
            if after.is_empty() {
                fixed.push(name);
            } else {
                failures.push(format!(
                    "{name}: fails only for unset fields ({before:?}) but still fails {after:?} after mutation"
                ));
            }
        } else {
            // Explicit values are never overridden, so the pod must still fail.
            if after.is_empty() {
                failures.push(format!(
                    "{name}: explicit values {reasons:?} were overridden (passes after mutation)"
                ));
            }
            explicit.push(format!("{name} ({})", reasons.join(", ")));
        }
    }
    println!(
        "security defaults: {} of {selected} fixture pods that fail restricted only for seccomp/allowPrivilegeEscalation/capabilities pass after mutation; {} have explicit values kadmit leaves alone",
        fixed.len(),
        explicit.len()
    );
    println!("passing after mutation: {}", fixed.join(", "));
    println!("left alone: {}", explicit.join("; "));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(!fixed.is_empty(), "no fixture pod was fixed");
    assert!(!explicit.is_empty(), "no fixture pod has explicit values");
    assert_eq!(fixed.len() + explicit.len(), selected);
}
