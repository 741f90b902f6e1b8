//! Runs the checked-in corpus of the text-protocol and storage fuzz
//! targets (`fuzz/corpus/{line_decoder,text_request,storage_recovery,
//! offsets_file}`) through the same entry points as the fuzz targets, on
//! stable Rust, so `cargo test` covers every seed and every crasher ever
//! added (the Kafka targets' corpus is run by `kafka_codec_corpus.rs`).
//!
//! Seed names say what must happen: a `storage_recovery` or `offsets_file`
//! seed named `open-*` must open, one named `refuse-*` must be refused.
//! The storage seeds are images of directories the broker itself wrote
//! (then damaged), made by `broker_made_directories_recover_as_expected`;
//! `FUZZ_CORPUS_OUT=$PWD/fuzz/corpus/storage_recovery cargo test --test
//! fuzz_corpus broker_made` writes them again.

mod common;

use std::path::{Path, PathBuf};

use common::fuzz_corpus as corpus;
use kafka_like_broker::broker::{Broker, ConnId, PartitionId};
use kafka_like_broker::config::{Config, FsyncPolicy};
use kafka_like_broker::fuzzing::{self, Decoded};
use kafka_like_broker::storage::Format;

#[test]
fn every_line_decoder_seed_runs() {
    let files = corpus("line_decoder");
    assert!(files.len() >= 8, "only {} seeds", files.len());
    for (_, data) in &files {
        fuzzing::line_decoder(data);
    }
}

#[test]
fn every_text_request_seed_runs() {
    let files = corpus("text_request");
    assert!(files.len() >= 5, "only {} seeds", files.len());
    for (_, data) in &files {
        fuzzing::text_request(data);
    }
}

#[test]
fn every_offsets_seed_runs() {
    let files = corpus("offsets_file");
    assert!(files.len() >= 5, "only {} seeds", files.len());
    for (name, data) in &files {
        let result = fuzzing::offsets_file(data);
        if name.starts_with("open-") {
            assert!(result.is_ok(), "{name}: {result:?}");
        } else if name.starts_with("refuse-") {
            assert!(result.is_err(), "{name}: {result:?}");
        }
    }
}

#[test]
fn every_storage_seed_runs() {
    let files = corpus("storage_recovery");
    assert!(files.len() >= 8, "only {} seeds", files.len());
    for (name, data) in &files {
        let result = fuzzing::storage_recovery(data);
        if name.starts_with("open-") {
            assert!(result.is_ok(), "{name}: {result:?}");
        } else if name.starts_with("refuse-") {
            assert!(result.is_err(), "{name}: {result:?}");
        }
    }
}

/// The decoder's properties hold on hand-made streams too, and the plain
/// model is what it claims.
#[test]
fn decoder_pieces_agree_with_the_plain_model() {
    let stream = b"PRODUCE a\r\n\nCONSUME 0\r\r\n0123456789abcdef\nPING\ntorn";
    let expected = vec![
        Decoded::Line(b"PRODUCE a".to_vec()),
        Decoded::Line(Vec::new()),
        Decoded::Line(b"CONSUME 0\r".to_vec()),
        Decoded::TooLong,
        Decoded::Line(b"PING".to_vec()),
    ];
    assert_eq!(fuzzing::plain_lines(12, stream), expected);
    for piece in 1..=stream.len() {
        let pieces = vec![piece; stream.len()];
        assert_eq!(
            fuzzing::decode_in_pieces(12, stream, &pieces),
            expected,
            "pieces of {piece}"
        );
    }
    // Telnet's Ctrl-C: the partial line goes, the timing mark is answered.
    assert_eq!(
        fuzzing::decode_in_pieces(100, b"PRODU\xff\xf4\xff\xfd\x06PING\r\n", &[3, 3, 3]),
        vec![
            Decoded::Interrupt,
            Decoded::Reply([0xff, 0xfb, 0x06]),
            Decoded::Line(b"PING".to_vec())
        ]
    );
}

// ----- storage images of directories the broker wrote -----------------------

fn run_jobs(broker: &mut Broker) {
    loop {
        let jobs = broker.take_jobs();
        if jobs.is_empty() {
            return;
        }
        for (journal, job) in jobs {
            if let Some(result) = job.run() {
                broker.job_done(journal, result);
            }
        }
    }
}

/// A data directory written by the broker: the default topic over several
/// 256-byte segments, a text topic of 3 partitions, a batch topic of 2,
/// and commits. Returns the number of messages.
fn broker_made(dir: &Path, fsync: FsyncPolicy) -> u64 {
    let config = Config {
        data_dir: dir.to_path_buf(),
        fsync,
        segment_bytes: 256,
        ..Config::default()
    };
    let mut broker = Broker::open(&config, None).unwrap();
    let conn = ConnId {
        slot: 1,
        generation: 1,
    };
    let orders = broker
        .create_topic(b"orders", Some(3), Format::Text)
        .unwrap();
    let kafka = broker.create_topic(b"k", Some(2), Format::Batch).unwrap();
    let mut count = 0;
    for i in 0..24u32 {
        let default = PartitionId {
            topic: 0,
            partition: 0,
        };
        broker
            .append(default, format!("message {i}").as_bytes(), conn)
            .unwrap();
        let p = PartitionId {
            topic: orders,
            partition: i % 3,
        };
        broker
            .append(
                p,
                format!("order {i} \u{e9} with some padding to roll\r").as_bytes(),
                conn,
            )
            .unwrap();
        let p = PartitionId {
            topic: kafka,
            partition: i % 2,
        };
        broker
            .append(p, format!("record {i}").as_bytes(), conn)
            .unwrap();
        count += 3;
        if i % 5 == 4 {
            settle(&mut broker);
        }
    }
    settle(&mut broker);
    for (p, group, offset) in [
        ((0, 0), "g1", 5),
        ((orders, 2), "g1", 3),
        ((kafka, 1), "g2", 7),
    ] {
        let p = PartitionId {
            topic: p.0,
            partition: p.1,
        };
        broker.commit(p, group.as_bytes(), offset, conn).unwrap();
    }
    settle(&mut broker);
    count
}

/// Writes and syncs everything staged. With `--fsync always` a segment
/// rolls only once synced, so a batch may need several rounds.
fn settle(broker: &mut Broker) {
    for _ in 0..10 {
        broker.flush();
        run_jobs(broker);
        broker.sync_all();
        run_jobs(broker);
    }
}

/// The `nth_last` newest rolled segment (`index`: its index file) under
/// `dir/rel`.
fn file_named(dir: &Path, rel: &str, index: bool, nth_last: usize) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join(rel))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let name = name
                .strip_suffix(".index")
                .filter(|_| index)
                .unwrap_or(&name);
            let digits = name.rsplit('.').next().unwrap_or("");
            (index == p.to_string_lossy().ends_with(".index"))
                && digits.len() == 20
                && digits.bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    names.sort();
    names[names.len() - 1 - nth_last].clone()
}

/// Each damage, applied to a fresh broker-made directory: its name (the
/// seed's), the options line, and whether the broker must open it.
type Damage = (&'static str, &'static str, bool, fn(&Path));

fn damages() -> Vec<Damage> {
    vec![
        ("open-broker-made", "", true, |_| {}),
        ("open-broker-made-always", "always small", true, |_| {}),
        // Recomputing checksums of intact files changes nothing.
        ("open-broker-made-crc", "crc small", true, |_| {}),
        ("open-torn-tail", "", true, |d| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(d.join("kafka_log.txt"))
                .unwrap();
            f.write_all(b"offset:24 message:torn wr").unwrap();
        }),
        ("open-damaged-index-rebuilt", "", true, |d| {
            let index = file_named(d, "", true, 0);
            let mut bytes = std::fs::read(&index).unwrap();
            bytes[20] ^= 0x40;
            std::fs::write(&index, bytes).unwrap();
        }),
        ("open-damaged-segment-read-fails", "", true, |d| {
            // Caught by the interval CRC when read, not at open.
            let seg = file_named(d, "", false, 0);
            let mut bytes = std::fs::read(&seg).unwrap();
            bytes[30] ^= 0x01;
            std::fs::write(&seg, bytes).unwrap();
        }),
        ("open-unsealed-segment-cut", "", true, |d| {
            // A crash after a roll, before the index: cut at the damage,
            // the newer files set aside (the checkpoint had not recorded
            // the segment as synced yet).
            std::fs::remove_file(d.join("recovery.checkpoint")).unwrap();
            let seg = file_named(d, "topics/orders", false, 0);
            std::fs::remove_file(format!("{}.index", seg.display())).unwrap();
            let bytes = std::fs::read(&seg).unwrap();
            std::fs::write(&seg, &bytes[..bytes.len() - 3]).unwrap();
        }),
        ("open-deleted-topic-leftover", "", true, |d| {
            let leftover = d.join("topics/old~deleted~123");
            std::fs::create_dir_all(&leftover).unwrap();
            std::fs::write(leftover.join("log.txt"), "offset:0 message:x\n").unwrap();
        }),
        ("open-skip-corrupt-gap", "skip", true, |d| {
            std::fs::remove_file(file_named(d, "", false, 0)).unwrap();
        }),
        ("refuse-gap-between-segments", "", false, |d| {
            std::fs::remove_file(file_named(d, "", false, 0)).unwrap();
        }),
        ("refuse-log-behind-checkpoint", "", false, |d| {
            let log = d.join("topics/k/partition-1/log.kafka");
            std::fs::write(&log, b"").unwrap();
        }),
        ("refuse-bad-topic-meta", "", false, |d| {
            std::fs::write(
                d.join("topics/orders/topic.meta"),
                "id=00\npartitions=3\nformat=text\n",
            )
            .unwrap();
        }),
        ("refuse-newer-layout", "", false, |d| {
            let meta = std::fs::read_to_string(d.join("broker.meta")).unwrap();
            std::fs::write(d.join("broker.meta"), meta.replace("layout=2", "layout=3")).unwrap();
        }),
        ("refuse-bad-offsets-line", "", false, |d| {
            std::fs::write(
                d.join("consumer_offsets.txt"),
                "default g1 5\nnot a line at all\n",
            )
            .unwrap();
        }),
    ]
}

/// Directories the broker wrote, as images, recover through the fuzz
/// entry point as the broker recovers them: intact ones with every
/// partition and message, damaged ones repaired or refused as
/// `docs/STORAGE.md` says. With `FUZZ_CORPUS_OUT` set, the images are
/// written there as seeds.
#[test]
fn broker_made_directories_recover_as_expected() {
    let out = std::env::var_os("FUZZ_CORPUS_OUT").map(PathBuf::from);
    for (name, options, opens, damage) in damages() {
        let tmp = tempfile::tempdir().unwrap();
        let fsync = if options.contains("always") {
            FsyncPolicy::Always
        } else {
            FsyncPolicy::Never
        };
        let messages = broker_made(tmp.path(), fsync);
        damage(tmp.path());
        let image = fuzzing::image_of(tmp.path(), options).unwrap();
        let result = fuzzing::storage_recovery(&image);
        assert_eq!(result.is_ok(), opens, "{name}: {result:?}");
        if name.starts_with("open-broker-made") {
            let found = result.unwrap();
            assert_eq!(found.messages, messages, "{name}: {found:?}");
            let ends: Vec<(String, u32, u64)> = found
                .partitions
                .iter()
                .map(|(t, p, _, next)| (t.clone(), *p, *next))
                .collect();
            assert_eq!(
                ends,
                vec![
                    ("default".to_string(), 0, 24),
                    ("k".to_string(), 0, 12),
                    ("k".to_string(), 1, 12),
                    ("orders".to_string(), 0, 8),
                    ("orders".to_string(), 1, 8),
                    ("orders".to_string(), 2, 8),
                ],
                "{name}"
            );
        }
        if let Some(out) = &out {
            std::fs::write(out.join(format!("{name}.img")), &image).unwrap();
        }
    }
}
