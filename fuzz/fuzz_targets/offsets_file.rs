//! Recovery of `consumer_offsets.txt` from arbitrary content, then reopen
//! and a commit.
#![no_main]

use kafka_like_broker::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::offsets_file(data);
});
