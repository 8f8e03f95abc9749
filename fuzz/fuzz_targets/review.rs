//! A body as the webhook receives it: decoding, every policy at `/validate` and `/mutate`
//! (the default configuration, and every policy on), the patch and the answer's JSON, checked
//! against `kadmit_core::invariants::check_review`.
#![no_main]

use std::sync::LazyLock;

use kadmit_core::cluster::Snapshot;
use kadmit_core::invariants::check_review;
use kadmit_core::{Config, Pipeline};
use libfuzzer_sys::fuzz_target;

static SETUPS: LazyLock<Vec<(Pipeline, Snapshot)>> = LazyLock::new(|| {
    let every = Config::from_yaml(include_str!("../../scripts/bench-full-policies.yaml"))
        .expect("scripts/bench-full-policies.yaml");
    let cluster = Snapshot::parse(include_str!("../../scripts/bench-cluster.yaml"))
        .expect("scripts/bench-cluster.yaml");
    vec![
        (Pipeline::from_config(&Config::default()), Snapshot::dev()),
        (Pipeline::from_config(&every), cluster),
    ]
});

fuzz_target!(|data: &[u8]| {
    for (pipeline, cluster) in SETUPS.iter() {
        if let Err(violation) = check_review(pipeline, cluster, data) {
            panic!("{violation}");
        }
    }
});
