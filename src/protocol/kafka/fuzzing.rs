//! Entry points for the fuzz targets in `fuzz/` and for
//! `tests/kafka_codec_corpus.rs`, which runs the checked-in corpus through
//! the same functions on stable Rust.
//!
//! Each function must return normally for *any* input; the assertions in
//! them are properties that hold for every input the decoders accept (a
//! rebuilt batch validates, a re-encoded response frames correctly), so a
//! failing one is a bug the fuzzer found.

use super::api::Request;
use super::batch::{self, BatchBuilder, RecordHeader};
use super::frame::{Frame, FrameDecoder};
use super::header::RequestHeader;
use super::versions::ApiKey;

/// Largest frame the request target accepts: small, so that the decoder's
/// too-large path is reached too.
const MAX_FRAME: usize = 64 * 1024;
/// Decompression bound for the batch target: small, so that zip bombs are
/// cut short quickly.
const MAX_DECOMPRESSED: usize = 256 * 1024;

/// Frames `data` as a request stream (in two pieces, split where the first
/// byte says, to reach the buffering paths), then decodes the header and
/// the body of every frame, and validates the record batches of any
/// Produce request.
pub fn request(data: &[u8]) {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(split);
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    for chunk in [a, b] {
        let mut input = chunk;
        while !input.is_empty() {
            let (used, frame) = decoder.decode(input);
            assert!(used > 0 && used <= input.len(), "decoder progress");
            if let Some(Frame::Request(body)) = frame {
                request_frame(body);
            }
            input = input.get(used..).unwrap_or_default();
        }
    }
    // The frame body on its own, without a size prefix.
    request_frame(data);
}

/// Decodes one frame body: header, then request.
pub fn request_frame(body: &[u8]) {
    let Ok((header, rest)) = RequestHeader::decode(body) else {
        return;
    };
    let _ = header.response_header_version();
    let Ok(request) = Request::decode(&header, rest) else {
        return;
    };
    assert!(ApiKey::from_i16(header.api_key).is_some());
    if let Request::Produce(p) = &request {
        for t in &p.topics {
            for part in &t.partitions {
                if let Some(records) = part.records {
                    record_batch(records);
                }
            }
        }
    }
}

/// Validates `data` as one batch and as a stream of batches; decodes the
/// records of every valid batch under a small decompression bound; then
/// rebuilds each decoded batch uncompressed and checks that the copy
/// validates and decodes to the same records. Then does the same with the
/// CRCs corrected, so that mutated inputs reach the decompressors and the
/// record decoder instead of stopping at the CRC check.
pub fn record_batch(data: &[u8]) {
    batches(data);
    let mut fixed = data.to_vec();
    batch::fix_crcs(&mut fixed);
    if fixed != data {
        batches(&fixed);
    }
}

fn batches(data: &[u8]) {
    let _ = batch::validate(data);
    let _ = batch::parse_header(data);
    for item in batch::Batches::new(data) {
        let Ok((header, bytes)) = item else {
            break;
        };
        let _ = header.last_sequence();
        let mut scratch = Vec::new();
        let Ok(records) = batch::records(bytes, MAX_DECOMPRESSED, &mut scratch) else {
            continue;
        };
        let mut decoded = Vec::new();
        let mut ok = true;
        for record in records {
            match record {
                Ok(r) => {
                    let headers: Vec<RecordHeader<'_>> = r.headers.clone().collect();
                    decoded.push((r.timestamp(&header), r.key, r.value, headers));
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let mut rebuilt = Vec::new();
        let mut builder = BatchBuilder::new(&mut rebuilt, header.base_offset, 0);
        for (ts, key, value, headers) in &decoded {
            builder.push(*ts, *key, *value, headers);
        }
        builder.finish();
        let copy = batch::validate(&rebuilt).expect("a rebuilt batch validates");
        assert_eq!(copy.record_count as usize, decoded.len());
        let mut scratch2 = Vec::new();
        let again: Vec<_> = batch::records(&rebuilt, MAX_DECOMPRESSED, &mut scratch2)
            .expect("a rebuilt batch decodes")
            .map(|r| r.expect("a rebuilt record decodes"))
            .collect();
        assert_eq!(again.len(), decoded.len());
        for (r, (ts, key, value, headers)) in again.iter().zip(&decoded) {
            assert_eq!(r.timestamp(&copy), *ts);
            assert_eq!((r.key, r.value), (*key, *value));
            assert!(r.headers.clone().eq(headers.iter().copied()));
        }
    }
}
