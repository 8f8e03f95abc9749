//! A manifest file as `kadmit check` reads it: YAML or JSON, several documents, Lists, every
//! Pod Security level, checked against `kadmit_core::invariants::check_manifest`.
#![no_main]

use kadmit_core::invariants::check_manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(violation) = check_manifest(text)
    {
        panic!("{violation}");
    }
});
