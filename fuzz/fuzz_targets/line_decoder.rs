//! The text protocol's line decoder (telnet commands included), fed the
//! same stream whole, a byte at a time and in pieces; every line also goes
//! to the request parser.
#![no_main]

use kafka_like_broker::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::line_decoder(data));
