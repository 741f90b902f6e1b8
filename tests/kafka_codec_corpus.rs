//! Runs the checked-in fuzz corpus (`fuzz/corpus/`) through the same entry
//! points as the fuzz targets, on stable Rust, so `cargo test` covers every
//! seed and every crasher ever added; and checks the requests and record
//! batches captured from real clients (librdkafka 2.16 via confluent-kafka,
//! kafka-python 3.0, kafkajs 2.2) decode to what those clients sent.
//!
//! The captures (`rdk-*`, `kpy-*`, `kjs-*`) came from each client
//! producing five (kafkajs: three) keyed messages per compression codec to
//! a scratch endpoint built on these codecs; the first message carries a
//! header `h=v`.

mod common;

use common::fuzz_corpus as corpus;
use kafka_like_broker::protocol::kafka::api::Request;
use kafka_like_broker::protocol::kafka::batch::{self, Compression};
use kafka_like_broker::protocol::kafka::{
    DecodeError, Frame, FrameDecoder, RequestHeader, fuzzing,
};

#[test]
fn every_request_seed_runs() {
    let files = corpus("kafka_request");
    assert!(files.len() >= 30, "only {} request seeds", files.len());
    for (_, data) in &files {
        fuzzing::request(data);
    }
}

#[test]
fn every_batch_seed_runs() {
    let files = corpus("kafka_batch");
    assert!(files.len() >= 20, "only {} batch seeds", files.len());
    for (_, data) in &files {
        fuzzing::record_batch(data);
    }
}

/// The one frame in a request seed.
fn frame(data: &[u8]) -> &[u8] {
    let mut decoder = FrameDecoder::new(1 << 20);
    match decoder.decode(data) {
        (used, Some(Frame::Request(body))) if used == data.len() => {
            // Borrowed from `data` on the fast path.
            let start = body.as_ptr() as usize - data.as_ptr() as usize;
            &data[start..start + body.len()]
        }
        other => panic!("not one frame: {other:?}"),
    }
}

#[test]
fn every_request_seed_is_a_valid_request() {
    for (name, data) in corpus("kafka_request") {
        if name.starts_with("crash-") {
            continue;
        }
        let body = frame(&data);
        let (header, rest) = RequestHeader::decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = Request::decode(&header, rest);
        if name.contains("api-versions-v4") {
            // kafka-python starts with v4; we answer it with error 35.
            assert_eq!(
                got,
                Err(DecodeError::UnsupportedVersion {
                    api_key: 18,
                    api_version: 4
                })
            );
        } else {
            got.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// What a client's messages look like, by capture name.
fn expected(name: &str) -> (Compression, Vec<(Option<String>, String)>) {
    let codec = if name.contains("gzip") {
        Compression::Gzip
    } else if name.contains("snappy") {
        Compression::Snappy
    } else if name.contains("lz4") {
        Compression::Lz4
    } else if name.contains("zstd") {
        Compression::Zstd
    } else {
        Compression::None
    };
    let word = match codec {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    };
    let messages = if name.starts_with("rdk-") {
        (0..5)
            .map(|i| {
                (
                    Some(format!("k{i}")),
                    format!("{word} message {i} ").repeat(20),
                )
            })
            .collect()
    } else if name.starts_with("kpy-") {
        let word = if codec == Compression::None {
            "None"
        } else {
            word
        };
        (0..5)
            .map(|i| (Some(format!("k{i}")), format!("{word} kpy {i} ").repeat(20)))
            .collect()
    } else if name.contains("idempotent") {
        vec![(None, "idem".to_string())]
    } else {
        let c = if codec == Compression::None { 0 } else { 1 };
        (0..3)
            .map(|i| (Some(format!("k{i}")), format!("kjs {c} {i}")))
            .collect()
    };
    (codec, messages)
}

fn check_batch(name: &str, bytes: &[u8]) {
    let header = batch::validate(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (codec, messages) = expected(name);
    assert_eq!(header.compression(), codec, "{name}");
    assert_eq!(
        header.has_producer_id(),
        name.contains("idempotent"),
        "{name}"
    );
    let mut scratch = Vec::new();
    let records: Vec<_> = batch::records(bytes, 1 << 20, &mut scratch)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .map(|r| r.unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect();
    assert_eq!(records.len(), messages.len(), "{name}");
    for (i, (record, (key, value))) in records.iter().zip(&messages).enumerate() {
        assert_eq!(record.offset(&header), i as i64, "{name}");
        assert_eq!(
            record.key.map(|k| String::from_utf8_lossy(k).into_owned()),
            *key,
            "{name}"
        );
        assert_eq!(record.value, Some(value.as_bytes()), "{name} record {i}");
        assert!(record.timestamp(&header) > 1_600_000_000_000, "{name}");
        let headers: Vec<_> = record.headers.clone().collect();
        if i == 0 && messages.len() > 1 {
            assert_eq!(headers.len(), 1, "{name}");
            assert_eq!(
                (headers[0].key, headers[0].value),
                (&b"h"[..], Some(&b"v"[..]))
            );
        } else if i > 0 {
            assert!(headers.is_empty(), "{name}");
        }
    }
    // What the broker does on produce: patch, and the CRC still holds.
    let mut copy = bytes.to_vec();
    batch::set_base_offset(&mut copy, 1_000);
    batch::set_partition_leader_epoch(&mut copy, 0);
    assert_eq!(batch::validate(&copy).unwrap().base_offset, 1_000);
}

#[test]
fn real_client_batches_decode() {
    let mut seen = 0;
    for (name, data) in corpus("kafka_batch") {
        if ["rdk-", "kpy-", "kjs-"].iter().any(|p| name.starts_with(p)) {
            check_batch(&name, &data);
            seen += 1;
        }
    }
    assert!(seen >= 12, "only {seen} captured batches");
}

#[test]
fn real_client_produce_requests_decode() {
    let mut seen = 0;
    for (name, data) in corpus("kafka_request") {
        if !name.contains("-produce-") || name.starts_with("seed-") {
            continue;
        }
        let (header, rest) = RequestHeader::decode(frame(&data)).unwrap();
        let Ok(Request::Produce(p)) = Request::decode(&header, rest) else {
            panic!("{name}: not a produce request");
        };
        assert_eq!(p.topics.len(), 1, "{name}");
        assert_eq!(p.topics[0].partitions.len(), 1, "{name}");
        let records = p.topics[0].partitions[0].records.expect("records");
        check_batch(&name, records);
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} captured produce requests");
}

/// Every strict prefix of a valid request body is an error: each field is
/// required, so a body cut anywhere is truncated, and the decoders must say
/// so rather than panic or invent values.
#[test]
fn every_truncated_request_is_an_error() {
    for (name, data) in corpus("kafka_request") {
        if name.starts_with("crash-") || name.contains("api-versions-v4") {
            continue;
        }
        let (header, body) = RequestHeader::decode(frame(&data)).unwrap();
        if body.is_empty() {
            continue;
        }
        assert!(Request::decode(&header, body).is_ok(), "{name}");
        for cut in 0..body.len() {
            assert!(
                Request::decode(&header, &body[..cut]).is_err(),
                "{name} cut at {cut} of {}",
                body.len()
            );
        }
    }
}

/// The whole request corpus as one stream, cut into pieces of every size
/// from 1 to 64 bytes, frames back into the same requests.
#[test]
fn corpus_as_one_stream_frames_back() {
    let files = corpus("kafka_request");
    let stream: Vec<u8> = files.iter().flat_map(|(_, d)| d.iter().copied()).collect();
    let expected: Vec<&[u8]> = files.iter().map(|(_, d)| &d[4..]).collect();
    for piece in 1..=64 {
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut got: Vec<Vec<u8>> = Vec::new();
        for chunk in stream.chunks(piece) {
            let mut input = chunk;
            while !input.is_empty() {
                let (used, frame) = decoder.decode(input);
                assert!(used > 0);
                if let Some(Frame::Request(body)) = frame {
                    got.push(body.to_vec());
                }
                input = &input[used..];
            }
        }
        assert_eq!(got.len(), expected.len(), "piece {piece}");
        assert!(
            got.iter().zip(&expected).all(|(a, b)| a == b),
            "piece {piece}"
        );
        assert_eq!(decoder.buffered(), 0);
    }
}
