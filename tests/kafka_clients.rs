//! Real Kafka clients against the real broker binary (issue 9):
//! confluent-kafka (librdkafka), kafka-python, kafkajs and kcat, driven by
//! the scripts in `tests/kafka/` (see its README), which print one JSON
//! object a line. Every test asserts the exact records, offsets and error
//! codes the clients report. A client that is not installed makes its
//! tests print `SKIPPED (... not installed: run .ci/run)` and return
//! (`.ci/run` installs them and sets `KAFKA_CLIENTS_REQUIRED=1`, which
//! turns a missing client into a failure).
//!
//! Consumer groups (the kafkajs consumer, kcat -G, confluent subscribe)
//! are in tests/kafka_groups.rs.

mod common;
mod kafka_support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{BrokerProcess, temp_data_dir};
use kafka_support::{
    Job, Json, Live, NewRec, Rec, Tool, bootstrap, ck, have, kcat, kjs, kp, kp_wire, obj, parallel,
    records, records_json, script, start_broker, text_fetch, watermarks,
};

const PY: &[Tool] = &[Tool::Python];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rec(key: Option<&str>, value: &str, headers: &[(&str, &str)], ts: i64) -> NewRec {
    NewRec {
        key: key.map(str::to_string),
        value: value.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timestamp: Some(ts),
        partition: None,
    }
}

/// Records exercising what a round trip must keep: keys (and a null one),
/// several headers (a repeated header key too), explicit timestamps (one
/// earlier than the one before), UTF-8 beyond ASCII, a tab and a newline.
fn sample_records() -> Vec<NewRec> {
    vec![
        rec(
            Some("key-1"),
            "plain value",
            &[("h1", "v1"), ("h2", "v2")],
            1_700_000_000_000,
        ),
        rec(
            None,
            "no key, one header",
            &[("only", "x")],
            1_700_000_000_001,
        ),
        rec(
            Some("key-3"),
            "unicode \u{2713} \u{e9} \u{6f22}\u{5b57}",
            &[],
            1_700_000_001_000,
        ),
        rec(
            Some("key-1"),
            "repeated header key",
            &[("dup", "a"), ("dup", "b")],
            1_600_000_000_000,
        ),
        rec(
            Some("tab\tkey"),
            "two\nlines\tand a tab",
            &[("h", "multi\nline")],
            1_700_000_002_000,
        ),
    ]
}

/// What a consumer must report for `sent`, produced in order from offset
/// `first` on partition `partition`.
fn expected(sent: &[NewRec], partition: i64, first: i64) -> Vec<Rec> {
    sent.iter()
        .enumerate()
        .map(|(i, r)| Rec {
            partition,
            offset: first + i as i64,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: r.timestamp.expect("a timestamp"),
        })
        .collect()
}

fn produce_args(b: &str, topic: &str, recs: &[NewRec], config: Json) -> Json {
    obj([
        ("bootstrap", b.into()),
        ("topic", topic.into()),
        ("records", records_json(recs)),
        ("config", config),
    ])
}

fn consume_args(b: &str, topic: &str, partitions: &[i64], count: usize) -> Json {
    obj([
        ("bootstrap", b.into()),
        ("topic", topic.into()),
        ("partitions", partitions.to_vec().into()),
        ("count", count.into()),
    ])
}

/// Asserts every delivery report succeeded, on `partition`, at offsets
/// `first..` in the order produced, and returns their count.
fn assert_delivered_in_order(
    out: &kafka_support::Output,
    recs: &[NewRec],
    partition: i64,
    first: i64,
) {
    let delivered = out.of("delivered");
    assert_eq!(delivered.len(), recs.len(), "{out}");
    let mut by_offset: Vec<(i64, String)> = delivered
        .iter()
        .map(|d| {
            assert!(d.get("error").is_null(), "delivery failed: {d}\n{out}");
            assert_eq!(d.get("partition").i64(), partition, "{d}");
            (d.get("offset").i64(), d.get("value").str().to_string())
        })
        .collect();
    by_offset.sort();
    let want: Vec<(i64, String)> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| (first + i as i64, r.value.clone()))
        .collect();
    assert_eq!(by_offset, want, "{out}");
}

/// kcat's output format: fields separated by 0x1f and records ended by
/// 0x1e, so values may hold tabs and newlines.
const KCAT_FORMAT: &str = "%p\\x1f%o\\x1f%T\\x1f%K\\x1f%k\\x1f%S\\x1f%s\\x1f%h\\x1e";

/// Reads `count` records of `topic`/`partition` from the beginning with
/// kcat and parses [`KCAT_FORMAT`]; headers come as `k=v,k=v`.
fn kcat_read(b: &str, topic: &str, partition: i64, count: usize) -> Vec<Rec> {
    let out = kcat(
        &[
            "-b",
            b,
            "-C",
            "-t",
            topic,
            "-p",
            &partition.to_string(),
            "-o",
            "beginning",
            "-c",
            &count.to_string(),
            "-e",
            "-q",
            "-f",
            KCAT_FORMAT,
        ],
        b"",
    );
    out.stdout
        .split('\u{1e}')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let f: Vec<&str> = r.split('\u{1f}').collect();
            assert_eq!(f.len(), 8, "kcat record {r:?}");
            let key_len: i64 = f[3].parse().unwrap();
            let value_len: usize = f[5].parse().unwrap();
            assert_eq!(f[6].len(), value_len, "kcat value length of {r:?}");
            Rec {
                partition: f[0].parse().unwrap(),
                offset: f[1].parse().unwrap(),
                timestamp: f[2].parse().unwrap(),
                key: (key_len >= 0).then(|| f[4].to_string()),
                value: f[6].to_string(),
                headers: if f[7].is_empty() {
                    Vec::new()
                } else {
                    f[7].split(',')
                        .map(|h| {
                            let (k, v) = h.split_once('=').expect("k=v header");
                            (k.to_string(), v.to_string())
                        })
                        .collect()
                },
            }
        })
        .collect()
}

/// `recs` produced in order into partition 0 of `topic` (from offset 0):
/// confluent-kafka, kafka-python and (if `with_kcat`) kcat, run at once,
/// each read exactly these records, keys, headers and timestamps, and the
/// partition's watermarks are 0 and `recs.len()`. (No header may hold `,`
/// or `=`, which kcat's `k=v,k=v` cannot show unambiguously.)
fn assert_kafka_readers_see(b: &str, topic: &str, recs: &[NewRec], with_kcat: bool) {
    let want = expected(recs, 0, 0);
    let n = recs.len();
    let args = consume_args(b, topic, &[0], n);
    let mut jobs: Vec<Job<(String, Vec<Rec>)>> = vec![
        Box::new({
            let args = args.clone();
            move || {
                let out = ck("consume", &args);
                assert_eq!(
                    watermarks(&out),
                    BTreeMap::from([(0, (0, n as i64))]),
                    "{out}"
                );
                ("confluent-kafka".into(), records(&out))
            }
        }),
        Box::new(move || {
            let out = kp("consume", &args);
            assert_eq!(
                watermarks(&out),
                BTreeMap::from([(0, (0, n as i64))]),
                "{out}"
            );
            ("kafka-python".into(), records(&out))
        }),
    ];
    if with_kcat {
        let (b, topic) = (b.to_string(), topic.to_string());
        jobs.push(Box::new(move || {
            ("kcat".into(), kcat_read(&b, &topic, 0, n))
        }));
    }
    for (client, got) in parallel(jobs) {
        assert_eq!(got, want, "what {client} read back");
    }
}

/// Values of partition 0 over the text protocol (`USE t`, `FETCH 0 N`),
/// `MESSAGE64` lines decoded.
fn text_values(broker: &BrokerProcess, topic: &str) -> Vec<(u64, String)> {
    let (messages, _end) = text_fetch(broker, topic, 100_000);
    messages
        .into_iter()
        .map(|(o, v)| (o, String::from_utf8(v).expect("utf-8 value")))
        .collect()
}

fn numbered<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<(u64, String)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as u64, v.to_string()))
        .collect()
}

// ------------------------------------------------------------ round trips

#[test]
fn confluent_round_trip_keeps_keys_headers_and_timestamps() {
    if !have("confluent_round_trip", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let mut recs = sample_records();
    recs.push(rec(
        Some("empty-value"),
        "",
        &[("e", "")],
        1_700_000_003_000,
    ));
    let out = ck(
        "produce",
        &produce_args(&b, "ck-rt", &recs, obj([("acks", "all".into())])),
    );
    assert_delivered_in_order(&out, &recs, 0, 0);
    assert_kafka_readers_see(&b, "ck-rt", &recs, true);
}

#[test]
fn kafka_python_round_trip_keeps_keys_headers_and_timestamps() {
    if !have("kafka_python_round_trip", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let recs = sample_records();
    // kafka-python's default with acks='all' is the idempotent producer.
    let out = kp(
        "produce",
        &produce_args(&b, "kp-rt", &recs, obj([("acks", "all".into())])),
    );
    assert_delivered_in_order(&out, &recs, 0, 0);
    assert_kafka_readers_see(&b, "kp-rt", &recs, true);
}

#[test]
fn kafkajs_producer_round_trip_keeps_keys_headers_and_timestamps() {
    if !have(
        "kafkajs_round_trip",
        &[Tool::Python, Tool::Kafkajs, Tool::Kcat],
    ) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    // kafkajs takes headers as an object: no repeated keys.
    let recs: Vec<NewRec> = sample_records()
        .into_iter()
        .filter(|r| r.headers.iter().all(|(k, _)| k != "dup"))
        .map(|mut r| {
            r.partition = Some(0);
            r
        })
        .collect();
    for (topic, idempotent) in [("kjs-rt", false), ("kjs-rt-idem", true)] {
        let out = kjs(
            "produce",
            &obj([
                ("bootstrap", b.as_str().into()),
                ("topic", topic.into()),
                ("records", records_json(&recs)),
                ("idempotent", idempotent.into()),
            ]),
        );
        let sent = out.one("sent");
        assert_eq!(
            (sent.get("error_code").i64(), sent.get("base_offset").i64()),
            (0, 0),
            "{out}"
        );
        assert_kafka_readers_see(&b, topic, &recs, true);
    }
}

#[test]
fn kcat_round_trip_with_key_delimiter_and_headers() {
    if !have("kcat_round_trip", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let before = now_ms();
    kcat(
        &[
            "-b",
            &b,
            "-P",
            "-t",
            "kcat-rt",
            "-p",
            "0",
            "-K",
            "|",
            "-H",
            "source=kcat",
            "-H",
            "trace=42",
        ],
        "k1|first value\nk2|second value with spaces\n|keyless \u{2713}\n".as_bytes(),
    );
    let after = now_ms();
    let headers = [("source", "kcat"), ("trace", "42")];
    let want_plain = [
        (Some("k1"), "first value"),
        (Some("k2"), "second value with spaces"),
        // kcat sends an empty key, not a null one, for `|value`.
        (Some(""), "keyless \u{2713}"),
    ];
    for (client, got) in [
        ("kcat", kcat_read(&b, "kcat-rt", 0, 3)),
        (
            "confluent-kafka",
            records(&ck("consume", &consume_args(&b, "kcat-rt", &[0], 3))),
        ),
    ] {
        assert_eq!(got.len(), 3, "{client}: {got:?}");
        for (i, (r, (k, v))) in got.iter().zip(want_plain).enumerate() {
            assert_eq!(
                (r.partition, r.offset, r.key.as_deref(), r.value.as_str()),
                (0, i as i64, k, v),
                "{client}"
            );
            let want_headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(r.headers, want_headers, "{client}");
            // kcat sets no timestamp: librdkafka stamps CreateTime itself.
            assert!(
                (before..=after).contains(&r.timestamp),
                "{client}: timestamp {} not within [{before}, {after}]",
                r.timestamp
            );
        }
    }
}

// ------------------------------------------------------------ compression

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// Compressible values (so that no client falls back to an uncompressed
/// batch), one with a newline (shown as `MESSAGE64` over text).
fn codec_values(codec: &str) -> Vec<String> {
    let mut v: Vec<String> = (0..20)
        .map(|i| format!("{codec}-{i}-{}", "compressible ".repeat(20)))
        .collect();
    v.push(format!("{codec} value\nwith a newline"));
    v
}

/// Each topic `<prefix>-<codec>` holds `codec_values(codec)` in one batch
/// stored with that codec (checked from a raw Fetch decoded by
/// kafka-python's record classes, CRC included) and reads back identical
/// through confluent-kafka and through text `FETCH`.
fn assert_codec_topics(broker: &BrokerProcess, prefix: &str, codecs: &[&str]) {
    let b = bootstrap(broker);
    let jobs: Vec<Job<()>> = codecs
        .iter()
        .map(|codec| {
            let b = b.clone();
            let f: Job<()> = Box::new(move || {
                let topic = format!("{prefix}-{codec}");
                let values = codec_values(codec);
                let raw = kp_wire(
                    "batches",
                    &obj([
                        ("bootstrap", b.as_str().into()),
                        ("topic", topic.as_str().into()),
                    ]),
                );
                let batches = raw.of("batch");
                assert!(!batches.is_empty(), "{raw}");
                let mut stored = Vec::new();
                for batch in &batches {
                    assert_eq!(batch.get("compression").str(), *codec, "{topic}: {raw}");
                    assert_eq!(batch.get("crc_ok"), &Json::Bool(true), "{raw}");
                    stored.extend(
                        batch
                            .get("values")
                            .arr()
                            .iter()
                            .map(|v| v.str().to_string()),
                    );
                }
                assert_eq!(stored, values, "{topic}: stored batch values");
                let out = ck("consume", &consume_args(&b, &topic, &[0], values.len()));
                let got: Vec<String> = records(&out).into_iter().map(|r| r.value).collect();
                assert_eq!(got, values, "{topic}: confluent-kafka read back");
            });
            f
        })
        .collect();
    parallel(jobs);
    for codec in codecs {
        let topic = format!("{prefix}-{codec}");
        let values = codec_values(codec);
        assert_eq!(
            text_values(broker, &topic),
            numbered(values.iter().map(String::as_str)),
            "{topic}: text FETCH"
        );
    }
}

fn value_records(values: &[String]) -> Vec<NewRec> {
    values
        .iter()
        .map(|v| NewRec {
            partition: Some(0),
            ..NewRec::value(v)
        })
        .collect()
}

#[test]
fn every_codec_from_confluent_kafka_reads_back_over_kafka_and_text() {
    if !have("codecs_confluent", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let jobs: Vec<Job<()>> = CODECS
        .iter()
        .map(|codec| {
            let b = b.clone();
            let f: Job<()> = Box::new(move || {
                let recs = value_records(&codec_values(codec));
                let config = obj([
                    ("compression.type", (*codec).into()),
                    // One batch for all of them.
                    ("linger.ms", 200.into()),
                ]);
                let out = ck(
                    "produce",
                    &produce_args(&b, &format!("ck-{codec}"), &recs, config),
                );
                assert_delivered_in_order(&out, &recs, 0, 0);
            });
            f
        })
        .collect();
    parallel(jobs);
    assert_codec_topics(&broker, "ck", &CODECS);
}

#[test]
fn every_codec_from_kafka_python_reads_back_over_kafka_and_text() {
    if !have("codecs_kafka_python", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let jobs: Vec<Job<()>> = CODECS
        .iter()
        .map(|codec| {
            let b = b.clone();
            let f: Job<()> = Box::new(move || {
                let recs = value_records(&codec_values(codec));
                let config = obj([
                    (
                        "compression_type",
                        if *codec == "none" {
                            Json::Null
                        } else {
                            (*codec).into()
                        },
                    ),
                    ("linger_ms", 200.into()),
                ]);
                let out = kp(
                    "produce",
                    &produce_args(&b, &format!("kp-{codec}"), &recs, config),
                );
                assert_delivered_in_order(&out, &recs, 0, 0);
            });
            f
        })
        .collect();
    parallel(jobs);
    // kafka-python's snappy uses the xerial framing (as Java does).
    assert_codec_topics(&broker, "kp", &CODECS);
}

#[test]
fn kafkajs_codecs_read_back_over_kafka_and_text() {
    if !have("codecs_kafkajs", &[Tool::Python, Tool::Kafkajs]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    // kafkajs has gzip built in and snappy through kafkajs-snappy (pure
    // JS); its lz4 and zstd codecs need native modules built from source,
    // which this machine cannot fetch, so they are not tested.
    let codecs = ["none", "gzip", "snappy"];
    for codec in codecs {
        let recs = value_records(&codec_values(codec));
        let out = kjs(
            "produce",
            &obj([
                ("bootstrap", b.as_str().into()),
                ("topic", format!("kjs-{codec}").into()),
                ("records", records_json(&recs)),
                ("compression", codec.into()),
            ]),
        );
        let sent = out.one("sent");
        assert_eq!(
            (sent.get("error_code").i64(), sent.get("base_offset").i64()),
            (0, 0),
            "{out}"
        );
    }
    assert_codec_topics(&broker, "kjs", &codecs);
}

#[test]
fn every_codec_from_kcat_reads_back_over_kafka_and_text() {
    if !have("codecs_kcat", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    for codec in CODECS {
        // kcat reads lines: no newline inside a value. Stored as one batch
        // (librdkafka's linger), the newline value is left out.
        let values: Vec<String> = codec_values(codec)
            .into_iter()
            .filter(|v| !v.contains('\n'))
            .collect();
        let input: String = values.iter().map(|v| format!("{v}\n")).collect();
        kcat(
            &[
                "-b",
                &b,
                "-P",
                "-t",
                &format!("kcat-{codec}"),
                "-p",
                "0",
                "-z",
                codec,
                "-X",
                "linger.ms=200",
            ],
            input.as_bytes(),
        );
    }
    // The same check without the newline value.
    for codec in CODECS {
        let topic = format!("kcat-{codec}");
        let values: Vec<String> = codec_values(codec)
            .into_iter()
            .filter(|v| !v.contains('\n'))
            .collect();
        let raw = kp_wire(
            "batches",
            &obj([
                ("bootstrap", b.as_str().into()),
                ("topic", topic.as_str().into()),
            ]),
        );
        let mut stored = Vec::new();
        for batch in raw.of("batch") {
            assert_eq!(batch.get("compression").str(), codec, "{topic}: {raw}");
            assert_eq!(batch.get("crc_ok"), &Json::Bool(true), "{raw}");
            stored.extend(
                batch
                    .get("values")
                    .arr()
                    .iter()
                    .map(|v| v.str().to_string()),
            );
        }
        assert_eq!(stored, values, "{topic}");
        let got: Vec<String> = kcat_read(&b, &topic, 0, values.len())
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(got, values, "{topic}: kcat read back");
        assert_eq!(
            text_values(&broker, &topic),
            numbered(values.iter().map(String::as_str)),
            "{topic}: text FETCH"
        );
    }
}

// ------------------------------------------------------------ acks

/// What one producer run with `acks` reported, for the checks below.
fn produce_with_acks(b: &str, client: &str, acks: &str, values: &[String]) {
    let topic = format!("acks-{client}-{acks}");
    let recs = value_records(values);
    match client {
        "ck" => {
            let out = ck(
                "produce",
                &produce_args(b, &topic, &recs, obj([("acks", acks.into())])),
            );
            if acks == "0" {
                // Nothing is answered: librdkafka reports success with no
                // offset.
                let delivered = out.of("delivered");
                assert_eq!(delivered.len(), values.len(), "{out}");
                for d in &delivered {
                    assert!(
                        d.get("error").is_null() && d.get("offset").is_null(),
                        "{out}"
                    );
                }
            } else {
                assert_delivered_in_order(&out, &recs, 0, 0);
            }
        }
        "kp" => {
            let acks_json: Json = if acks == "all" {
                "all".into()
            } else {
                acks.parse::<i64>().unwrap().into()
            };
            let out = kp(
                "produce",
                &produce_args(b, &topic, &recs, obj([("acks", acks_json)])),
            );
            if acks == "0" {
                // kafka-python makes up a success (its offsets are its own).
                for d in out.of("delivered") {
                    assert!(d.get("error").is_null(), "{out}");
                }
            } else {
                assert_delivered_in_order(&out, &recs, 0, 0);
            }
        }
        "kjs" => {
            let acks_n: i64 = if acks == "all" {
                -1
            } else {
                acks.parse().unwrap()
            };
            let out = kjs(
                "produce",
                &obj([
                    ("bootstrap", b.into()),
                    ("topic", topic.as_str().into()),
                    ("records", records_json(&recs)),
                    ("acks", acks_n.into()),
                ]),
            );
            let sent = out.of("sent");
            if acks == "0" {
                assert!(sent.is_empty(), "acks=0 answered: {out}");
            } else {
                assert_eq!(sent.len(), 1, "{out}");
                assert_eq!(
                    (
                        sent[0].get("error_code").i64(),
                        sent[0].get("base_offset").i64()
                    ),
                    (0, 0),
                    "{out}"
                );
            }
        }
        _ => unreachable!(),
    }
}

#[test]
fn acks_0_1_all_from_every_client_store_every_record() {
    if !have("acks", &[Tool::Python, Tool::Kafkajs]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let runs: Vec<(&str, &str)> = ["ck", "kp", "kjs"]
        .into_iter()
        .flat_map(|c| ["0", "1", "all"].map(|a| (c, a)))
        .collect();
    let jobs: Vec<Job<()>> = runs
        .iter()
        .map(|&(client, acks)| {
            let b = b.clone();
            let f: Job<()> = Box::new(move || {
                let values: Vec<String> = (0..10)
                    .map(|i| format!("{client}-acks{acks}-{i}"))
                    .collect();
                produce_with_acks(&b, client, acks, &values);
                // acks=0 data arrives all the same: read until all is there.
                let topic = format!("acks-{client}-{acks}");
                let out = ck("consume", &consume_args(&b, &topic, &[0], values.len()));
                let got: Vec<String> = records(&out).into_iter().map(|r| r.value).collect();
                assert_eq!(got, values, "{topic}");
                assert_eq!(watermarks(&out)[&0], (0, 10), "{topic}");
            });
            f
        })
        .collect();
    parallel(jobs);
}

#[test]
fn acks_0_produce_gets_no_response_on_the_wire() {
    if !have("acks0_wire", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let out = kp_wire(
        "acks0",
        &obj([
            ("bootstrap", bootstrap(&broker).into()),
            ("topic", "wire-acks0".into()),
            ("values", vec!["x", "y"].into()),
        ]),
    );
    assert_eq!(out.one("metadata").get("error_code").i64(), 0, "{out}");
    // The Produce (correlation id 100) is not answered: the first response
    // is the Metadata request's sent after it (101).
    assert_eq!(
        out.one("first_response").get("correlation_id").i64(),
        101,
        "{out}"
    );
    assert_eq!(text_values(&broker, "wire-acks0"), numbered(["x", "y"]));
}

/// With acks=0 nothing is answered, so a refused batch closes the
/// connection, as Kafka does; a dropped batch would vanish without a sign.
#[test]
fn a_refused_acks_0_batch_closes_the_connection() {
    if !have("acks0_refused", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &["--max-message-bytes", "200"]);
    let big = "v".repeat(500);
    let out = kp_wire(
        "acks0",
        &obj([
            ("bootstrap", bootstrap(&broker).into()),
            ("topic", "wire-acks0-big".into()),
            ("values", vec![big.as_str()].into()),
        ]),
    );
    assert_eq!(out.one("metadata").get("error_code").i64(), 0, "{out}");
    assert!(out.of("first_response").is_empty(), "{out}");
    assert_eq!(out.of("closed").len(), 1, "{out}");
    assert!(text_values(&broker, "wire-acks0-big").is_empty());
}

// ------------------------------------------------------------ idempotence

#[test]
fn idempotent_retry_gets_its_original_offset_and_a_gap_is_out_of_order() {
    if !have("idempotent", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_broker(&dir, &[]);
    let topic = "idem";
    let out = kp_wire(
        "idempotent",
        &obj([
            ("bootstrap", bootstrap(&broker).into()),
            ("topic", topic.into()),
        ]),
    );
    assert_eq!(out.one("metadata").get("error_code").i64(), 0, "{out}");
    let init = out.one("init");
    assert_eq!(init.get("error_code").i64(), 0, "{out}");
    assert!(init.get("producer_id").i64() >= 0, "{out}");
    assert_eq!(init.get("epoch").i64(), 0, "{out}");
    let steps: Vec<(String, i64, i64)> = out
        .of("produce")
        .iter()
        .map(|p| {
            (
                p.get("step").str().to_string(),
                p.get("error_code").i64(),
                p.get("base_offset").i64(),
            )
        })
        .collect();
    let s = |name: &str, code: i64, offset: i64| (name.to_string(), code, offset);
    assert_eq!(
        steps,
        vec![
            s("first", 0, 0),
            s("second", 0, 3),
            // The exact same request again: success with the original
            // offset, nothing appended.
            s("first_again", 0, 0),
            s("second_again", 0, 3),
            // Sequence 10 when 5 is next: OUT_OF_ORDER_SEQUENCE_NUMBER.
            s("gap", 45, -1),
            s("third", 0, 5),
        ],
        "{out}"
    );
    let want = ["a0", "a1", "a2", "b0", "b1", "c0"];
    let check_log = |broker: &BrokerProcess| {
        assert_eq!(text_values(broker, topic), numbered(want));
        // Three batches, each stored once.
        let raw = kp_wire(
            "batches",
            &obj([
                ("bootstrap", bootstrap(broker).into()),
                ("topic", topic.into()),
            ]),
        );
        let bases: Vec<i64> = raw
            .of("batch")
            .iter()
            .map(|b| b.get("base_offset").i64())
            .collect();
        assert_eq!(bases, vec![0, 3, 5], "{raw}");
        assert_eq!(raw.one("fetch").get("high_watermark").i64(), 6, "{raw}");
    };
    check_log(&broker);

    // After a restart the producer state comes back from the log: the
    // same batches are still recognised as duplicates.
    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}");
    let broker = start_broker(&dir, &[]);
    let out = kp_wire(
        "replay",
        &obj([
            ("bootstrap", bootstrap(&broker).into()),
            ("topic", topic.into()),
            ("producer_id", init.get("producer_id").clone()),
            ("epoch", init.get("epoch").clone()),
        ]),
    );
    let steps: Vec<(String, i64, i64)> = out
        .of("produce")
        .iter()
        .map(|p| {
            (
                p.get("step").str().to_string(),
                p.get("error_code").i64(),
                p.get("base_offset").i64(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            s("first_again", 0, 0),
            s("third_again", 0, 5),
            s("fourth", 0, 6)
        ],
        "{out}"
    );
    assert_eq!(
        text_values(&broker, topic),
        numbered(["a0", "a1", "a2", "b0", "b1", "c0", "d0"])
    );
}

// ------------------------------------------------------------ admin

#[test]
fn confluent_admin_creates_3_partitions_and_an_explicit_partition_reads_back_alone() {
    if !have("admin_confluent", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let topic = |name: &str, partitions: i64, rf: i64| {
        obj([
            ("name", name.into()),
            ("partitions", partitions.into()),
            ("replication_factor", rf.into()),
        ])
    };
    let create = |topics: Vec<Json>| {
        ck(
            "create_topics",
            &obj([
                ("bootstrap", b.as_str().into()),
                ("topics", Json::Arr(topics)),
            ]),
        )
    };
    let out = create(vec![topic("adm3", 3, 1), topic("adm-rf3", 1, 3)]);
    let created: BTreeMap<String, Option<String>> = out
        .of("created")
        .iter()
        .map(|c| {
            let err = c.get("error");
            (
                c.get("topic").str().to_string(),
                (!err.is_null()).then(|| err.get("name").str().to_string()),
            )
        })
        .collect();
    assert_eq!(
        created,
        BTreeMap::from([
            ("adm3".to_string(), None),
            (
                "adm-rf3".to_string(),
                Some("INVALID_REPLICATION_FACTOR".to_string())
            ),
        ]),
        "{out}"
    );
    let partitions: BTreeMap<String, Json> = out
        .of("metadata")
        .iter()
        .map(|m| {
            (
                m.get("topic").str().to_string(),
                m.get("partitions").clone(),
            )
        })
        .collect();
    assert_eq!(partitions["adm3"], Json::from(vec![0, 1, 2]), "{out}");
    assert!(partitions["adm-rf3"].is_null(), "created anyway: {out}");

    let again = create(vec![topic("adm3", 3, 1)]);
    let err = again.one("created").get("error").clone();
    assert_eq!(
        (err.get("name").str(), err.get("code").i64()),
        ("TOPIC_ALREADY_EXISTS", 36),
        "{again}"
    );

    let recs: Vec<NewRec> = ["p2-a", "p2-b", "p2-c"]
        .iter()
        .map(|v| NewRec {
            key: Some(format!("key-{v}")),
            partition: Some(2),
            timestamp: Some(1_700_000_000_000),
            ..NewRec::value(v)
        })
        .collect();
    let out = ck("produce", &produce_args(&b, "adm3", &recs, obj([])));
    assert_delivered_in_order(&out, &recs, 2, 0);
    let out = ck("consume", &consume_args(&b, "adm3", &[0, 1, 2], 3));
    assert_eq!(records(&out), expected(&recs, 2, 0), "{out}");
    assert_eq!(
        watermarks(&out),
        BTreeMap::from([(0, (0, 0)), (1, (0, 0)), (2, (0, 3))]),
        "{out}"
    );
    // The text protocol addresses the partition as `topic/2`.
    let (messages, end) = text_fetch(&broker, "adm3/2", 10);
    assert_eq!(end, 3);
    assert_eq!(
        messages,
        vec![
            (0, b"p2-a".to_vec()),
            (1, b"p2-b".to_vec()),
            (2, b"p2-c".to_vec())
        ]
    );
    assert_eq!(text_fetch(&broker, "adm3/1", 10), (vec![], 0));
    assert_eq!(text_fetch(&broker, "adm3", 10), (vec![], 0), "partition 0");
}

#[test]
fn kafkajs_admin_creates_3_partitions_and_an_explicit_partition_reads_back_alone() {
    if !have("admin_kafkajs", &[Tool::Python, Tool::Kafkajs]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let topic = |name: &str, partitions: i64, rf: i64| {
        obj([
            ("name", name.into()),
            ("partitions", partitions.into()),
            ("replication_factor", rf.into()),
        ])
    };
    let out = kjs(
        "admin",
        &obj([
            ("bootstrap", b.as_str().into()),
            (
                "topics",
                Json::Arr(vec![
                    topic("kjs3", 3, 1),
                    topic("kjs3", 3, 1),
                    topic("kjs-rf3", 1, 3),
                ]),
            ),
        ]),
    );
    let created = out.of("created");
    assert_eq!(created.len(), 3, "{out}");
    // kafkajs resolves true for a new topic and false (not an error) for
    // one that exists: TOPIC_ALREADY_EXISTS.
    assert_eq!(created[0].get("result"), &Json::Bool(true), "{out}");
    assert_eq!(created[1].get("result"), &Json::Bool(false), "{out}");
    assert!(created[1].get("error").is_null(), "{out}");
    assert_eq!(
        created[2].get("error").get("type").str(),
        "INVALID_REPLICATION_FACTOR",
        "{out}"
    );
    let metadata = out.of("metadata");
    assert_eq!(
        metadata[0].get("partitions"),
        &Json::from(vec![0, 1, 2]),
        "{out}"
    );
    assert!(metadata[2].get("partitions").is_null(), "{out}");

    let recs: Vec<NewRec> = ["p1-a", "p1-b"]
        .iter()
        .map(|v| NewRec {
            partition: Some(1),
            timestamp: Some(1_700_000_000_000),
            ..NewRec::value(v)
        })
        .collect();
    let out = kjs(
        "produce",
        &obj([
            ("bootstrap", b.as_str().into()),
            ("topic", "kjs3".into()),
            ("records", records_json(&recs)),
        ]),
    );
    let sent = out.one("sent");
    assert_eq!(
        (
            sent.get("partition").i64(),
            sent.get("error_code").i64(),
            sent.get("base_offset").i64()
        ),
        (1, 0, 0),
        "{out}"
    );
    let out = kjs(
        "admin",
        &obj([
            ("bootstrap", b.as_str().into()),
            ("topics", Json::Arr(vec![])),
            ("offsets_topic", "kjs3".into()),
        ]),
    );
    assert_eq!(
        watermarks(&out),
        BTreeMap::from([(0, (0, 0)), (1, (0, 2)), (2, (0, 0))]),
        "{out}"
    );
    let out = ck("consume", &consume_args(&b, "kjs3", &[0, 1, 2], 2));
    assert_eq!(records(&out), expected(&recs, 1, 0), "{out}");
}

// ------------------------------------------------------------ ListOffsets

#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    if !have("list_offsets", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    const T0: i64 = 1_650_000_000_000;
    // Ten records one second apart, each in its own batch (flushed one at
    // a time would be slow; a linger of 0 and distinct timestamps suffice
    // for the by-time lookup, which works within batches too).
    let recs: Vec<NewRec> = (0..10)
        .map(|i| NewRec {
            timestamp: Some(T0 + 1000 * i),
            partition: Some(0),
            ..NewRec::value(&format!("t{i}"))
        })
        .collect();
    let out = ck("produce", &produce_args(&b, "lo", &recs, obj([])));
    assert_delivered_in_order(&out, &recs, 0, 0);
    let times = vec![T0 - 5000, T0, T0 + 1, T0 + 4500, T0 + 9000, T0 + 9001];
    // The first offset whose timestamp is >= the one asked for.
    let want = [0, 0, 1, 5, 9];
    let args = obj([
        ("bootstrap", b.as_str().into()),
        ("topic", "lo".into()),
        ("times", times.clone().into()),
    ]);
    let (by_ck, by_kp) = {
        let args2 = args.clone();
        let mut r = parallel(vec![
            Box::new(move || ck("offsets", &args)) as Job<_>,
            Box::new(move || kp("offsets", &args2)),
        ]);
        let kp_out = r.pop().unwrap();
        (r.pop().unwrap(), kp_out)
    };
    for out in [&by_ck, &by_kp] {
        assert_eq!(watermarks(out), BTreeMap::from([(0, (0, 10))]), "{out}");
    }
    let ck_offsets: Vec<i64> = by_ck
        .of("for_time")
        .iter()
        .map(|f| {
            assert!(f.get("error").is_null(), "{by_ck}");
            f.get("offset").i64()
        })
        .collect();
    // librdkafka reports "none that late" as -1 (OFFSET_END).
    let mut ck_want = want.to_vec();
    ck_want.push(-1);
    assert_eq!(ck_offsets, ck_want, "{by_ck}");
    let kp_found: Vec<(Option<i64>, Option<i64>)> = by_kp
        .of("for_time")
        .iter()
        .map(|f| {
            let o = f.get("offset");
            let t = f.get("found_timestamp");
            (
                (!o.is_null()).then(|| o.i64()),
                (!t.is_null()).then(|| t.i64()),
            )
        })
        .collect();
    let mut kp_want: Vec<(Option<i64>, Option<i64>)> = want
        .iter()
        .map(|&o| (Some(o), Some(T0 + 1000 * o)))
        .collect();
    // kafka-python reports None when no record is that late.
    kp_want.push((None, None));
    assert_eq!(kp_found, kp_want, "{by_kp}");
}

// ------------------------------------------------------------ offset reset

#[test]
fn assigned_past_the_end_with_earliest_reads_everything() {
    if !have("reset_earliest", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let recs: Vec<NewRec> = (0..5)
        .map(|i| NewRec {
            partition: Some(0),
            timestamp: Some(1_700_000_000_000 + i),
            ..NewRec::value(&format!("old-{i}"))
        })
        .collect();
    let out = ck("produce", &produce_args(&b, "reset", &recs, obj([])));
    assert_delivered_in_order(&out, &recs, 0, 0);
    let mut ck_args = consume_args(&b, "reset", &[0], 5);
    let mut kp_args = ck_args.clone();
    if let Json::Obj(m) = &mut ck_args {
        m.push(("offset".into(), 1000.into()));
        m.push((
            "config".into(),
            obj([("auto.offset.reset", "earliest".into())]),
        ));
    }
    if let Json::Obj(m) = &mut kp_args {
        m.push(("offset".into(), 1000.into()));
        m.push((
            "config".into(),
            obj([("auto_offset_reset", "earliest".into())]),
        ));
    }
    let outs = parallel(vec![
        Box::new(move || ck("consume", &ck_args)) as Job<_>,
        Box::new(move || kp("consume", &kp_args)),
    ]);
    for out in outs {
        assert_eq!(records(&out), expected(&recs, 0, 0), "{out}");
    }
}

#[test]
fn assigned_past_the_end_with_latest_reads_only_new_records() {
    if !have("reset_latest", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let jobs: Vec<Job<()>> = ["ck", "kp"]
        .into_iter()
        .map(|client| {
            let b = b.clone();
            let f: Job<()> = Box::new(move || {
                let topic = format!("latest-{client}");
                let old: Vec<NewRec> = (0..5)
                    .map(|i| NewRec {
                        partition: Some(0),
                        ..NewRec::value(&format!("old-{i}"))
                    })
                    .collect();
                let out = ck("produce", &produce_args(&b, &topic, &old, obj([])));
                assert_delivered_in_order(&out, &old, 0, 0);
                let mut args = obj([
                    ("bootstrap", b.as_str().into()),
                    ("topic", topic.as_str().into()),
                    ("offset", 1000.into()),
                ]);
                if client == "ck"
                    && let Json::Obj(m) = &mut args
                {
                    m.push((
                        "config".into(),
                        obj([("auto.offset.reset", "latest".into())]),
                    ));
                }
                let out = if client == "ck" {
                    ck("reset_latest", &args)
                } else {
                    kp("reset_latest", &args)
                };
                // The script produced new-0, new-1, ... one at a time until
                // the consumer got one: it must get no old record, and what
                // it got must be the last new ones, at their offsets.
                let produced: Vec<String> = out
                    .of("produced")
                    .iter()
                    .map(|p| p.str().to_string())
                    .collect();
                let got = records(&out);
                assert!(!got.is_empty(), "nothing received: {out}");
                assert!(got.len() <= produced.len(), "{out}");
                let skipped = produced.len() - got.len();
                let want: Vec<(i64, String)> = produced[skipped..]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (5 + (skipped + i) as i64, v.clone()))
                    .collect();
                let got: Vec<(i64, String)> =
                    got.into_iter().map(|r| (r.offset, r.value)).collect();
                assert_eq!(got, want, "{out}");
                assert_eq!(
                    out.one("done").get("high").i64(),
                    5 + produced.len() as i64,
                    "{out}"
                );
            });
            f
        })
        .collect();
    parallel(jobs);
}

// ------------------------------------------------------------ cross-protocol

#[test]
fn text_produce_is_read_exactly_by_kcat_confluent_kafka_and_kafka_python() {
    if !have("text_to_kafka", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let values = [
        "hello",
        "two  spaces inside",
        "unicode \u{2713} \u{e9}",
        "trailing space ",
        "tab\there",
        "{\"json\": [1, 2]}",
    ];
    let mut c = broker.client();
    assert_eq!(c.request("USE xt"), "USING xt");
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            c.request(&format!("PRODUCE {v}")),
            format!("ACK offset:{i}")
        );
    }
    assert_eq!(c.request("USE default"), "USING default");
    assert_eq!(c.request("PRODUCE on the default topic"), "ACK offset:0");
    let by_ck = records(&ck("consume", &consume_args(&b, "xt", &[0], values.len())));
    for (client, got) in [
        ("kcat", kcat_read(&b, "xt", 0, values.len())),
        ("confluent-kafka", by_ck),
    ] {
        // Text messages have no key and no headers.
        let plain: Vec<(i64, i64, Option<String>, String, usize)> = got
            .iter()
            .map(|r| {
                (
                    r.partition,
                    r.offset,
                    r.key.clone(),
                    r.value.clone(),
                    r.headers.len(),
                )
            })
            .collect();
        let want: Vec<(i64, i64, Option<String>, String, usize)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (0, i as i64, None, v.to_string(), 0))
            .collect();
        assert_eq!(plain, want, "{client}");
    }
    let default = kcat_read(&b, "default", 0, 1);
    assert_eq!(
        default
            .iter()
            .map(|r| (r.offset, r.value.as_str()))
            .collect::<Vec<_>>(),
        vec![(0, "on the default topic")]
    );
}

/// Issue 9: "a Kafka consumer of a text topic gets synthesized batches
/// (value = the message, no key, timestamps as stored or log-append time)".
/// Text topics store no timestamp, so Kafka readers must see the log-append
/// time (not -1, "no timestamp", which e.g. Kafka Streams rejects).
#[test]
fn text_produced_records_carry_a_log_append_timestamp_for_kafka_readers() {
    if !have("text_timestamps", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let before = now_ms();
    let mut c = broker.client();
    assert_eq!(c.request("USE ts"), "USING ts");
    assert_eq!(c.request("PRODUCE stamped"), "ACK offset:0");
    let by_kcat = kcat_read(&b, "ts", 0, 1);
    let by_ck = records(&ck("consume", &consume_args(&b, "ts", &[0], 1)));
    // Lenient: any time from before the PRODUCE to after the reads.
    let after = now_ms();
    for (client, got) in [("kcat", by_kcat), ("confluent-kafka", by_ck)] {
        assert_eq!(got.len(), 1, "{client}");
        assert!(
            (before..=after).contains(&got[0].timestamp),
            "{client}: timestamp {} not within [{before}, {after}]",
            got[0].timestamp
        );
    }
}

/// Text records get the log-append time of their index interval (the
/// index has an entry per ~4 KiB of log), as LogAppendTime, and
/// ListOffsets by time answers from it: the first interval written at or
/// after the time asked for, so never a record late.
#[test]
fn text_topics_answer_list_offsets_by_log_append_time() {
    if !have("text_list_offsets", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let wait_past = |t: i64| {
        while now_ms() <= t {
            std::thread::yield_now();
        }
    };
    let before = now_ms();
    wait_past(before);
    let mut c = broker.client();
    assert_eq!(c.request("USE tt"), "USING tt");
    let value = "v".repeat(100);
    // Lines of 118 bytes (offsets 0-9) and 119: offset 35 is the first to
    // start past 4096 bytes, so it opens the second interval.
    for i in 0..50 {
        assert_eq!(
            c.request(&format!("PRODUCE {value}")),
            format!("ACK offset:{i}")
        );
    }
    // Records 0-49 were written at or before `last`, so strictly before
    // `mid`; records 50-59 strictly after it.
    let last = now_ms();
    wait_past(last);
    let mid = now_ms();
    wait_past(mid);
    for i in 50..60 {
        assert_eq!(
            c.request(&format!("PRODUCE {value}")),
            format!("ACK offset:{i}")
        );
    }
    let after = now_ms();
    wait_past(after);
    let out = ck(
        "offsets",
        &obj([
            ("bootstrap", b.as_str().into()),
            ("topic", "tt".into()),
            ("times", vec![before, mid, mid + 1, now_ms()].into()),
        ]),
    );
    let found: Vec<i64> = out
        .of("for_time")
        .iter()
        .map(|f| f.get("offset").i64())
        .collect();
    // The second interval was last written after `mid`: records 35-49,
    // written before it, come with it rather than be skipped. Nothing
    // was written at or after the last time asked (-1, OFFSET_END).
    assert_eq!(found, vec![0, 35, 35, -1], "{out}");
    let out = ck("consume", &consume_args(&b, "tt", &[0], 60));
    let recs = records(&out);
    assert_eq!(recs.len(), 60, "{out}");
    let t1 = recs[0].timestamp;
    let t2 = recs[35].timestamp;
    assert!((before..mid + 1).contains(&t1), "{t1} {before} {mid}");
    assert!((mid + 1..=after).contains(&t2), "{t2} {mid} {after}");
    for r in &recs {
        let want = if r.offset < 35 { t1 } else { t2 };
        assert_eq!(r.timestamp, want, "offset {}", r.offset);
    }
    for r in out.of("record") {
        // confluent-kafka's TIMESTAMP_LOG_APPEND_TIME
        assert_eq!(r.get("timestamp_type").i64(), 2, "{out}");
    }
}

#[test]
fn kafka_produced_values_are_read_exactly_by_text_fetch_and_consume() {
    if !have("kafka_to_text", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let values = [
        "plain",
        "multi\nline\nvalue",
        "",
        "unicode \u{2713} \u{6f22}\u{5b57}",
        "ends with newline\n",
        "  leading and trailing spaces  ",
        "ends with carriage return\r",
        "carriage\rreturn inside",
    ];
    let recs: Vec<NewRec> = values
        .iter()
        .enumerate()
        .map(|(i, v)| NewRec {
            // Keys and headers are not part of what text readers see.
            key: Some(format!("k{i}")),
            headers: vec![("h".into(), "x".into())],
            partition: Some(0),
            ..NewRec::value(v)
        })
        .collect();
    let out = ck("produce", &produce_args(&b, "kt", &recs, obj([])));
    assert_delivered_in_order(&out, &recs, 0, 0);
    assert_eq!(text_values(&broker, "kt"), numbered(values));
    // The exact lines: a value with a newline, or ending in a carriage
    // return, is a MESSAGE64 line with its bytes in base64; the others are
    // MESSAGE lines as for text topics.
    let mut c = broker.client();
    assert_eq!(c.request("USE kt"), "USING kt");
    c.send("FETCH 0 100\n");
    assert_eq!(
        c.lines_until("END"),
        vec![
            "MESSAGE offset:0 plain",
            "MESSAGE64 offset:1 bXVsdGkKbGluZQp2YWx1ZQ==",
            "MESSAGE offset:2 ",
            "MESSAGE offset:3 unicode \u{2713} \u{6f22}\u{5b57}",
            "MESSAGE64 offset:4 ZW5kcyB3aXRoIG5ld2xpbmUK",
            "MESSAGE offset:5   leading and trailing spaces  ",
            "MESSAGE64 offset:6 ZW5kcyB3aXRoIGNhcnJpYWdlIHJldHVybg0=",
            "MESSAGE offset:7 carriage\rreturn inside",
            "END offset:8",
        ]
    );
    assert_eq!(
        c.request("CONSUME 1"),
        "MESSAGE64 offset:1 bXVsdGkKbGluZQp2YWx1ZQ=="
    );
    assert_eq!(c.request("CONSUME 0"), "MESSAGE offset:0 plain");
    assert_eq!(c.request("CONSUME 8"), "NO_MESSAGE");
}

// ------------------------------------------------------------ restarts

#[test]
fn a_clean_restart_keeps_every_kafka_record_key_header_and_timestamp() {
    if !have("restart", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let out = ck(
        "create_topics",
        &obj([
            ("bootstrap", b.as_str().into()),
            (
                "topics",
                Json::Arr(vec![obj([
                    ("name", "rs3".into()),
                    ("partitions", 3.into()),
                ])]),
            ),
        ]),
    );
    assert!(out.one("created").get("error").is_null(), "{out}");
    let recs: Vec<NewRec> = sample_records()
        .into_iter()
        .chain(sample_records())
        .enumerate()
        .map(|(i, mut r)| {
            r.partition = Some(i as i64 % 3);
            r
        })
        .collect();
    for (topic, codec) in [("rs3", "none"), ("rs3-zstd", "zstd")] {
        let recs: Vec<NewRec> = if topic == "rs3" {
            recs.clone()
        } else {
            sample_records()
                .into_iter()
                .map(|r| NewRec {
                    partition: Some(0),
                    ..r
                })
                .collect()
        };
        let out = ck(
            "produce",
            &produce_args(&b, topic, &recs, obj([("compression.type", codec.into())])),
        );
        assert_eq!(out.of("delivered").len(), recs.len(), "{out}");
    }
    let mut want: Vec<Rec> = Vec::new();
    for p in 0..3 {
        let in_p: Vec<NewRec> = recs
            .iter()
            .filter(|r| r.partition == Some(p))
            .cloned()
            .collect();
        want.extend(expected(&in_p, p, 0));
    }
    let want_zstd = expected(&sample_records(), 0, 0);
    let mut c = broker.client();
    assert_eq!(c.request("PRODUCE text before restart"), "ACK offset:0");
    drop(c);
    let read_all = |broker: &BrokerProcess| {
        let b = bootstrap(broker);
        let out = ck("consume", &consume_args(&b, "rs3", &[0, 1, 2], recs.len()));
        let mut got = records(&out);
        got.sort();
        assert_eq!(got, want, "{out}");
        assert_eq!(
            watermarks(&out),
            BTreeMap::from([(0, (0, 4)), (1, (0, 3)), (2, (0, 3))]),
            "{out}"
        );
        let out = ck(
            "consume",
            &consume_args(&b, "rs3-zstd", &[0], want_zstd.len()),
        );
        assert_eq!(records(&out), want_zstd, "{out}");
    };
    read_all(&broker);

    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success(), "SIGTERM exit: {status:?}");
    let broker = start_broker(&dir, &[]);
    read_all(&broker);
    assert_eq!(
        text_values(&broker, "default"),
        numbered(["text before restart"])
    );
    // Offsets carry on where they were.
    let more = vec![NewRec {
        partition: Some(0),
        timestamp: Some(1_800_000_000_000),
        ..NewRec::value("after restart")
    }];
    let out = ck(
        "produce",
        &produce_args(&bootstrap(&broker), "rs3", &more, obj([])),
    );
    assert_delivered_in_order(&out, &more, 0, 4);
}

#[test]
fn kill_9_under_kafka_produce_load_loses_no_acknowledged_record() {
    if !have("kill9_load", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_broker(&dir, &["--fsync", "always"]);
    let b = bootstrap(&broker);
    let mut load = Live::spawn(
        "confluent-kafka load",
        script(
            "ck.py",
            "load",
            &obj([
                ("bootstrap", b.as_str().into()),
                ("topic", "load".into()),
                ("seconds", 2.into()),
                ("max", 50_000.into()),
                ("config", obj([("message.timeout.ms", 3000.into())])),
            ]),
        ),
    );
    // Kill the broker once a few hundred records are acknowledged, while
    // the producer is still going.
    let acked_so_far = std::cell::Cell::new(0);
    load.expect("acked", Duration::from_secs(20), |_| {
        acked_so_far.set(acked_so_far.get() + 1);
        acked_so_far.get() >= 300
    });
    broker.kill9();
    let status = load.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "the load script failed: {}",
        load.stderr()
    );
    let done = load.of("done");
    assert_eq!(done.len(), 1, "{:?}", load.seen);
    let acked: Vec<(i64, String)> = load
        .of("acked")
        .iter()
        .map(|a| (a.get("offset").i64(), a.get("value").str().to_string()))
        .collect();
    assert!(acked.len() >= 300, "{} acked", acked.len());
    assert!(
        done[0].get("failed").i64() + done[0].get("remaining").i64() > 0,
        "the broker was killed before the load ended, yet nothing failed: {:?}",
        done[0]
    );
    let last = acked.iter().map(|(o, _)| *o).max().unwrap();

    let broker = start_broker(&dir, &[]);
    let out = ck(
        "consume",
        &consume_args(&bootstrap(&broker), "load", &[0], last as usize + 1),
    );
    let stored: BTreeMap<i64, String> = records(&out)
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect();
    assert_eq!(
        stored.len() as i64,
        last + 1,
        "offsets 0..={last} all there"
    );
    for (offset, value) in &acked {
        assert_eq!(
            stored.get(offset),
            Some(value),
            "acknowledged offset {offset} lost or changed"
        );
    }
    let (low, high) = watermarks(&out)[&0];
    assert_eq!(low, 0);
    assert!(high > last, "high watermark {high} <= last acked {last}");
    eprintln!(
        "kill -9 under load: {} acknowledged (last offset {last}), {} failed or unsent, \
         high watermark after restart {high}",
        acked.len(),
        done[0].get("failed").i64() + done[0].get("remaining").i64()
    );
}

// ------------------------------------------------------------ SASL/PLAIN

#[test]
fn sasl_plain_with_the_token_works_and_anything_else_is_refused() {
    if !have("sasl", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (tmp, dir) = temp_data_dir();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let broker = start_broker(&dir, &["--auth-token-file", token_file.to_str().unwrap()]);
    let b = bootstrap(&broker);
    let sasl = |password: &str| {
        obj([
            ("security.protocol", "SASL_PLAINTEXT".into()),
            ("sasl.mechanism", "PLAIN".into()),
            ("sasl.username", "any-user".into()),
            ("sasl.password", password.into()),
            ("reconnect.backoff.ms", 500.into()),
            ("reconnect.backoff.max.ms", 1000.into()),
        ])
    };
    let args = |value: &str, config: Json| {
        obj([
            ("bootstrap", b.as_str().into()),
            ("topic", "secured".into()),
            ("value", value.into()),
            ("timeout_s", 3.into()),
            ("config", config),
        ])
    };
    let runs = [
        args("good", sasl("s3cret-token")),
        args("wrong", sasl("wrong-token")),
        args("none", obj([])),
    ];
    let outs = parallel(
        runs.into_iter()
            .map(|a| Box::new(move || ck("metadata", &a)) as Job<_>)
            .collect(),
    );
    let [good, wrong, none]: &[kafka_support::Output] = &outs[..] else {
        unreachable!()
    };
    assert_eq!(good.one("metadata").get("brokers").i64(), 1, "{good}");
    let delivered = good.one("delivered");
    assert!(delivered.get("error").is_null(), "{good}");
    assert_eq!(delivered.get("offset").i64(), 0, "{good}");

    assert!(
        wrong.of("metadata").is_empty(),
        "a wrong password got metadata: {wrong}"
    );
    assert_eq!(wrong.of("metadata_error").len(), 1, "{wrong}");
    assert!(
        wrong
            .of("error_cb")
            .iter()
            .any(|e| e.get("name").str() == "_AUTHENTICATION"),
        "no authentication error reported: {wrong}"
    );
    assert!(wrong.of("delivered").is_empty(), "{wrong}");

    assert!(
        none.of("metadata").is_empty(),
        "no SASL got metadata: {none}"
    );
    assert_eq!(none.of("metadata_error").len(), 1, "{none}");
    assert!(none.of("delivered").is_empty(), "{none}");

    // kcat with the token reads what the good client wrote.
    let out = kcat(
        &[
            "-b",
            &b,
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=PLAIN",
            "-X",
            "sasl.username=someone",
            "-X",
            "sasl.password=s3cret-token",
            "-C",
            "-t",
            "secured",
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
            "-q",
            "-f",
            "%o %s\\n",
        ],
        b"",
    );
    assert_eq!(out.stdout, "0 good\n");
    // Only the good value is stored.
    let mut c = broker.client();
    assert_eq!(c.request("AUTH s3cret-token"), "AUTHENTICATED");
    assert_eq!(
        kafka_support::text_fetch_with(&mut c, "secured", 10),
        (vec![(0, b"good".to_vec())], 1)
    );
}

// ------------------------------------------------------------ flags

#[test]
fn small_segments_survive_kill_9_and_lookups_by_time_cross_them() {
    if !have("segments", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_broker(&dir, &["--segment-bytes", "4096"]);
    let b = bootstrap(&broker);
    const T0: i64 = 1_000_000;
    // 250 records of ~110 bytes in batches of at most 7: many segments.
    let recs: Vec<NewRec> = (0..250)
        .map(|i| NewRec {
            partition: Some(0),
            timestamp: Some(T0 + 10 * i),
            key: Some(format!("k{i}")),
            ..NewRec::value(&format!("s{i} {}", "x".repeat(100)))
        })
        .collect();
    let config = obj([("linger.ms", 0.into()), ("batch.num.messages", 7.into())]);
    let out = ck("produce", &produce_args(&b, "seg", &recs, config));
    assert_delivered_in_order(&out, &recs, 0, 0);
    // A rolled segment's index is written by a helper thread once its
    // data is synced, so the files appear a little after the acks.
    let sealed = || {
        std::fs::read_dir(dir.join("topics"))
            .unwrap()
            .flatten()
            .flat_map(|t| std::fs::read_dir(t.path()).unwrap().flatten())
            .filter(|f| f.file_name().to_string_lossy().ends_with(".index"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sealed() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} sealed segments",
            sealed()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let times = vec![T0, T0 + 555, T0 + 1000, T0 + 2490, T0 + 2500];
    let lookups = |b: &str| {
        let out = ck(
            "offsets",
            &obj([
                ("bootstrap", b.into()),
                ("topic", "seg".into()),
                ("times", times.clone().into()),
            ]),
        );
        assert_eq!(watermarks(&out), BTreeMap::from([(0, (0, 250))]), "{out}");
        out.of("for_time")
            .iter()
            .map(|f| f.get("offset").i64())
            .collect::<Vec<i64>>()
    };
    assert_eq!(lookups(&b), vec![0, 56, 100, 249, -1]);
    broker.kill9();
    let broker = start_broker(&dir, &["--segment-bytes", "4096"]);
    let b = bootstrap(&broker);
    assert_eq!(lookups(&b), vec![0, 56, 100, 249, -1]);
    let out = ck("consume", &consume_args(&b, "seg", &[0], 250));
    assert_eq!(records(&out), expected(&recs, 0, 0));
    let text = text_values(&broker, "seg");
    assert_eq!(text.len(), 250);
    assert_eq!(text[123], (123, format!("s123 {}", "x".repeat(100))));
}

#[test]
fn a_batch_over_max_message_bytes_gets_message_too_large() {
    if !have("max_message_bytes", PY) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &["--max-message-bytes", "3000"]);
    let b = bootstrap(&broker);
    let big = NewRec {
        partition: Some(0),
        ..NewRec::value(&"y".repeat(5000))
    };
    let small = NewRec {
        partition: Some(0),
        ..NewRec::value(&"s".repeat(1000))
    };
    let out = ck(
        "produce",
        &produce_args(&b, "big", std::slice::from_ref(&big), obj([])),
    );
    let err = out.one("delivered").get("error").clone();
    assert_eq!(
        (err.get("name").str(), err.get("code").i64()),
        ("MSG_SIZE_TOO_LARGE", 10),
        "{out}"
    );
    let out = kp(
        "produce",
        &produce_args(&b, "big", &[big], obj([("retries", 0.into())])),
    );
    assert_eq!(
        out.one("delivered").get("error").get("name").str(),
        "MessageSizeTooLargeError",
        "{out}"
    );
    let out = ck(
        "produce",
        &produce_args(&b, "big", std::slice::from_ref(&small), obj([])),
    );
    assert_delivered_in_order(&out, &[small], 0, 0);
    assert_eq!(text_values(&broker, "big"), numbered([&*"s".repeat(1000)]));
}

#[test]
fn producers_auto_create_topics_librdkafka_consumers_and_no_auto_create_do_not() {
    if !have("auto_create", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let topics = |broker: &BrokerProcess| {
        let mut c = broker.client();
        c.send("TOPICS\n");
        c.lines_until("END")
            .iter()
            .filter_map(|l| l.strip_prefix("TOPIC "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect::<Vec<String>>()
    };
    // A librdkafka consumer asks Metadata not to create: nothing read,
    // nothing created.
    let out = ck(
        "consume",
        &obj([
            ("bootstrap", b.as_str().into()),
            ("topic", "ghost".into()),
            ("count", 1.into()),
            ("timeout_s", 2.into()),
        ]),
    );
    assert!(records(&out).is_empty(), "{out}");
    assert!(!topics(&broker).contains(&"ghost".to_string()), "{out}");
    // A producer (kcat) creates it.
    kcat(&["-b", &b, "-P", "-t", "made-by-kcat"], b"one\n");
    assert!(topics(&broker).contains(&"made-by-kcat".to_string()));
    drop(broker);

    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &["--no-auto-create"]);
    let b = bootstrap(&broker);
    let out = ck(
        "produce",
        &produce_args(
            &b,
            "refused",
            &[NewRec::value("x")],
            obj([("message.timeout.ms", 2000.into())]),
        ),
    );
    let d = out.one("delivered");
    assert!(
        !d.get("error").is_null(),
        "delivered to a topic never created: {out}"
    );
    assert_eq!(topics(&broker), vec!["default".to_string()]);
}
