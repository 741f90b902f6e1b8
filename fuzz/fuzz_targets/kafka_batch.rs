//! Record batches: validation, iteration, decompression and decoding.
#![no_main]

use kafka_like_broker::protocol::kafka::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::record_batch(data));
