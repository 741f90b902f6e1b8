//! The text protocol's request parser, on one line and on each of its
//! newline-separated parts.
#![no_main]

use kafka_like_broker::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::text_request(data));
