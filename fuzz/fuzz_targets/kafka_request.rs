//! Frames, header and body of any request, as a client could send them.
#![no_main]

use kafka_like_broker::protocol::kafka::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::request(data));
