//! Runs one pipeline over one review many times, for an instruction profile:
//!
//!     scripts/profile.sh validate|mutate|mutate-bare
//!
//! Not a benchmark (criterion's `benches/` are): a fixed amount of work with no timing, so
//! `valgrind --tool=callgrind` counts the same instructions on every run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kadmit_core::cluster::Snapshot;
use kadmit_core::{Config, Endpoint, Pipeline, Review};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "validate".into());
    let config_path = args.next().expect("config path");
    let cluster_path = args.next().expect("cluster path");
    let review_path = args.next().expect("review path");
    let iterations: usize = args.next().map(|n| n.parse().unwrap()).unwrap_or(2000);
    let config = Config::from_yaml(&std::fs::read_to_string(config_path).unwrap()).unwrap();
    let cluster = Snapshot::parse(&std::fs::read_to_string(cluster_path).unwrap()).unwrap();
    let mut body = std::fs::read(review_path).unwrap();
    if which == "mutate-bare" {
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for list in ["containers", "initContainers"] {
            for c in v["request"]["object"]["spec"][list].as_array_mut().unwrap() {
                c.as_object_mut().unwrap().remove("securityContext");
            }
        }
        body = serde_json::to_vec(&v).unwrap();
    }
    let endpoint = if which == "validate" {
        Endpoint::Validate
    } else {
        Endpoint::Mutate
    };
    let pipeline = Pipeline::from_config(&config);
    let mut allowed = 0;
    for _ in 0..iterations {
        let review = Review::from_slice(&body).unwrap();
        let decision = pipeline.evaluate(endpoint, &review, &cluster);
        let out = decision.response.to_review_json(review.version);
        allowed += usize::from(decision.response.allowed) + out.len() % 2;
        if iterations == 1 {
            println!("{}", String::from_utf8_lossy(&out));
        }
    }
    println!("{allowed}");
}
