//! A pod as the object of a review, so the fuzzer works on pod shapes directly rather than
//! through the review around them: each policy alone (Pod Security, GMSA, default resources,
//! pull secrets, security defaults, as `scripts/bench-full-policies.yaml` sets them) and then
//! all of them, for CREATE and for UPDATE, at `/validate` and `/mutate` (patch generation
//! included), checked against `kadmit_core::invariants::check_review`.
#![no_main]

use std::sync::LazyLock;

use kadmit_core::cluster::Snapshot;
use kadmit_core::invariants::{check_review, pod_review_body};
use kadmit_core::{Config, Pipeline};
use libfuzzer_sys::fuzz_target;

static SETUPS: LazyLock<(Vec<Pipeline>, Snapshot)> = LazyLock::new(|| {
    let every = Config::from_yaml(include_str!("../../scripts/bench-full-policies.yaml"))
        .expect("scripts/bench-full-policies.yaml");
    let cluster = Snapshot::parse(include_str!("../../scripts/bench-cluster.yaml"))
        .expect("scripts/bench-cluster.yaml");
    let mut none = every.clone();
    none.pod_security.enabled = false;
    none.gmsa.enabled = false;
    none.default_resources.limit_ranges = false;
    none.default_resources.rules.clear();
    none.image_pull_secrets.rules.clear();
    none.security_defaults.enabled = false;
    let alone = |set: &dyn Fn(&mut Config)| {
        let mut config = none.clone();
        set(&mut config);
        Pipeline::from_config(&config)
    };
    let pipelines = vec![
        alone(&|c| c.pod_security = every.pod_security.clone()),
        alone(&|c| c.gmsa = every.gmsa.clone()),
        alone(&|c| c.default_resources = every.default_resources.clone()),
        alone(&|c| c.image_pull_secrets = every.image_pull_secrets.clone()),
        alone(&|c| c.security_defaults = every.security_defaults.clone()),
        Pipeline::from_config(&every),
    ];
    (pipelines, cluster)
});

fuzz_target!(|data: &[u8]| {
    let Ok(object) = std::str::from_utf8(data) else {
        return;
    };
    let (pipelines, cluster) = &*SETUPS;
    for update in [false, true] {
        let body = pod_review_body(object, update);
        for pipeline in pipelines {
            if let Err(violation) = check_review(pipeline, cluster, body.as_bytes()) {
                panic!("{violation}");
            }
        }
    }
});
