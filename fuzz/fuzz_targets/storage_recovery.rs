//! Recovery of a whole data directory built from the input (see
//! `fuzzing::storage_recovery` for the image format), then reads, appends
//! and a second open.
#![no_main]

use kafka_like_broker::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::storage_recovery(data);
});
