//! Cross-checks against an independent implementation, the
//! `kafka-protocol` crate (generated from Kafka's JSON message specs):
//! requests encoded by it must decode with ours to the same values and
//! consume every byte; responses encoded by ours must be byte-identical to
//! the same response encoded by it (and so decode with it). Every version
//! we support is covered; the few that kafka-protocol no longer has
//! (Produce 0-2, DeleteTopics 0, DescribeConfigs 0: removed in Kafka 4.0)
//! are checked against bytes written out by hand from the spec.

use kafka_protocol::messages as m;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::*;
use crate::protocol::kafka::error::ErrorCode;
use crate::protocol::kafka::header::RequestHeader;
use crate::protocol::kafka::versions::{ApiKey, SUPPORTED_APIS};
use crate::protocol::kafka::wire::{Reader, Result, Writer};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn tn(x: &str) -> m::TopicName {
    m::TopicName(s(x))
}

fn gid(x: &str) -> m::GroupId {
    m::GroupId(s(x))
}

fn theirs<T: Encodable>(msg: &T, version: i16) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("kafka-protocol encode v{version}: {e}"));
    buf
}

fn ours(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    f(&mut Writer::new(&mut buf));
    buf
}

/// Decodes with ours and checks that every byte was used.
fn decode<'a, T>(bytes: &'a [u8], f: impl FnOnce(&mut Reader<'a>) -> Result<T>) -> T {
    let mut r = Reader::new(bytes);
    let out = f(&mut r).unwrap_or_else(|e| panic!("our decode failed: {e}"));
    assert_eq!(r.remaining(), 0, "bytes left after decoding");
    out
}

/// The versions of an API we support.
fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = key.range();
    r.min..=r.max
}

/// With `KAFKA_CORPUS_OUT=dir`, writes a framed request (size, header,
/// `body`) into `dir` as a fuzzing seed; `fuzz/corpus/kafka_request` was
/// made this way (`KAFKA_CORPUS_OUT=fuzz/corpus/kafka_request cargo test
/// --lib cross_check`), besides requests captured from real clients.
fn seed(key: ApiKey, version: i16, body: &[u8]) {
    let Some(dir) = std::env::var_os("KAFKA_CORPUS_OUT") else {
        return;
    };
    let header = m::RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(s("seed")));
    let header_version =
        crate::protocol::kafka::versions::request_header_version(key as i16, version);
    let mut frame = theirs(&header, header_version);
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    let name = format!("seed-{key:?}-v{version}.bin").to_lowercase();
    std::fs::write(std::path::Path::new(&dir).join(name), out).expect("write seed");
}

/// A response encoded by both must be byte-identical, and theirs must
/// decode ours.
fn same_response<T: Encodable + Decodable>(version: i16, theirs_msg: &T, ours_bytes: Vec<u8>) {
    let expected = theirs(theirs_msg, version);
    assert_eq!(ours_bytes, expected, "response bytes differ at v{version}");
    let mut slice: &[u8] = &ours_bytes;
    T::decode(&mut slice, version).expect("kafka-protocol decodes ours");
    assert!(slice.is_empty());
}

#[test]
fn request_headers() {
    for (key, version, header_version) in [(3i16, 8i16, 1i16), (18, 3, 2), (18, 4, 2), (0, 7, 1)] {
        let h = m::RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(s("client-1")));
        let mut bytes = theirs(&h, header_version);
        bytes.push(0xab);
        let (ours_h, body) = RequestHeader::decode(&bytes).unwrap();
        assert_eq!(
            (ours_h.api_key, ours_h.api_version, ours_h.correlation_id),
            (key, version, 77)
        );
        assert_eq!(ours_h.client_id, Some("client-1"));
        assert_eq!(body, [0xab]);
    }
    for hv in [0, 1] {
        let h = m::ResponseHeader::default().with_correlation_id(5);
        let mut mine = Vec::new();
        crate::protocol::kafka::header::encode_response_header(&mut Writer::new(&mut mine), 5, hv);
        assert_eq!(mine, theirs(&h, hv));
    }
}

#[test]
fn api_versions() {
    for v in versions(ApiKey::ApiVersions) {
        let mut req = m::ApiVersionsRequest::default();
        if v >= 3 {
            req = req
                .with_client_software_name(s("librdkafka"))
                .with_client_software_version(s("2.16.0"));
        }
        let bytes = theirs(&req, v);
        seed(ApiKey::ApiVersions, v, &bytes);
        let got = decode(&bytes, |r| ApiVersionsRequest::decode(r, v));
        if v >= 3 {
            assert_eq!(got.client_software_name, Some("librdkafka"));
            assert_eq!(got.client_software_version, Some("2.16.0"));
        } else {
            assert_eq!(got, ApiVersionsRequest::default());
        }

        let keys: Vec<m::api_versions_response::ApiVersion> = SUPPORTED_APIS
            .iter()
            .map(|a| {
                m::api_versions_response::ApiVersion::default()
                    .with_api_key(a.key as i16)
                    .with_min_version(a.min)
                    .with_max_version(a.max)
            })
            .collect();
        let resp = m::ApiVersionsResponse::default()
            .with_error_code(0)
            .with_api_keys(keys.clone());
        let mine = ours(|w| ApiVersionsResponse::supported().encode(v, w));
        same_response(v, &resp, mine);
    }
    // The answer to an unsupported version: v0-shaped, error 35.
    let keys: Vec<m::api_versions_response::ApiVersion> = SUPPORTED_APIS
        .iter()
        .map(|a| {
            m::api_versions_response::ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect();
    let resp = m::ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(keys);
    let mine = ours(|w| ApiVersionsResponse::unsupported_version().encode(0, w));
    same_response(0, &resp, mine);
    // And a v4 request is refused as unsupported, not misparsed.
    assert!(ApiVersionsRequest::decode(&mut Reader::new(&[]), 4).is_err());
}

#[test]
fn metadata() {
    for v in versions(ApiKey::Metadata) {
        let topic =
            |n: &str| m::metadata_request::MetadataRequestTopic::default().with_name(Some(tn(n)));
        let req = m::MetadataRequest::default()
            .with_topics(Some(vec![topic("a"), topic("b.c")]))
            .with_allow_auto_topic_creation(v < 4)
            .with_include_cluster_authorized_operations(v >= 8)
            .with_include_topic_authorized_operations(v >= 8);
        let bytes = theirs(&req, v);
        seed(ApiKey::Metadata, v, &bytes);
        let got = decode(&bytes, |r| MetadataRequest::decode(r, v));
        assert_eq!(got.topics, Some(vec!["a", "b.c"]));
        assert_eq!(got.allow_auto_topic_creation, v < 4);
        assert_eq!(got.include_cluster_authorized_operations, v >= 8);
        assert_eq!(got.include_topic_authorized_operations, v >= 8);

        // Empty list: "all" in v0, "none" from v1; null (v1+) is "all".
        let bytes = theirs(&m::MetadataRequest::default().with_topics(Some(vec![])), v);
        let got = decode(&bytes, |r| MetadataRequest::decode(r, v));
        assert_eq!(got.topics, if v == 0 { None } else { Some(vec![]) });
        if v >= 1 {
            let bytes = theirs(&m::MetadataRequest::default().with_topics(None), v);
            assert_eq!(
                decode(&bytes, |r| MetadataRequest::decode(r, v)).topics,
                None
            );
        }

        let rack = (v >= 1).then_some("rack-1");
        let cluster_id = (v >= 2).then_some("cluster-xyz");
        let controller_id = if v >= 1 { 1 } else { -1 };
        let leader_epoch = if v >= 7 { 7 } else { -1 };
        let offline: &[i32] = if v >= 5 { &[2] } else { &[] };
        let ops = if v >= 8 { 0x0f } else { i32::MIN };
        let throttle = if v >= 3 { 9 } else { 0 };
        let resp = m::MetadataResponse::default()
            .with_throttle_time_ms(throttle)
            .with_brokers(vec![
                m::metadata_response::MetadataResponseBroker::default()
                    .with_node_id(m::BrokerId(0))
                    .with_host(s("127.0.0.1"))
                    .with_port(9092)
                    .with_rack(rack.map(s)),
            ])
            .with_cluster_id(cluster_id.map(s))
            .with_controller_id(m::BrokerId(controller_id))
            .with_topics(vec![
                m::metadata_response::MetadataResponseTopic::default()
                    .with_error_code(0)
                    .with_name(Some(tn("a")))
                    .with_is_internal(v >= 1)
                    .with_partitions(vec![
                        m::metadata_response::MetadataResponsePartition::default()
                            .with_error_code(0)
                            .with_partition_index(0)
                            .with_leader_id(m::BrokerId(0))
                            .with_leader_epoch(leader_epoch)
                            .with_replica_nodes(vec![m::BrokerId(0)])
                            .with_isr_nodes(vec![m::BrokerId(0)])
                            .with_offline_replicas(
                                offline.iter().map(|&n| m::BrokerId(n)).collect(),
                            ),
                    ])
                    .with_topic_authorized_operations(ops),
                m::metadata_response::MetadataResponseTopic::default()
                    .with_error_code(3)
                    .with_name(Some(tn("missing")))
                    .with_topic_authorized_operations(ops),
            ])
            .with_cluster_authorized_operations(ops);
        let node = [0];
        let mine = MetadataResponse {
            throttle_time_ms: throttle,
            brokers: vec![MetadataBroker {
                node_id: 0,
                host: "127.0.0.1",
                port: 9092,
                rack,
            }],
            cluster_id,
            controller_id,
            topics: vec![
                MetadataTopic {
                    error_code: ErrorCode::NONE,
                    name: "a",
                    is_internal: v >= 1,
                    partitions: vec![MetadataPartition {
                        error_code: ErrorCode::NONE,
                        partition_index: 0,
                        leader_id: 0,
                        leader_epoch,
                        replica_nodes: &node,
                        isr_nodes: &node,
                        offline_replicas: offline,
                    }],
                    topic_authorized_operations: ops,
                },
                MetadataTopic {
                    error_code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    name: "missing",
                    is_internal: false,
                    partitions: vec![],
                    topic_authorized_operations: ops,
                },
            ],
            cluster_authorized_operations: ops,
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn produce() {
    let records = b"\x00\x01record-bytes".to_vec();
    for v in 3..=7 {
        let req = m::ProduceRequest::default()
            .with_transactional_id(Some(m::TransactionalId(s("tx-1"))))
            .with_acks(-1)
            .with_timeout_ms(1500)
            .with_topic_data(vec![
                m::produce_request::TopicProduceData::default()
                    .with_name(tn("t"))
                    .with_partition_data(vec![
                        m::produce_request::PartitionProduceData::default()
                            .with_index(2)
                            .with_records(Some(records.clone().into())),
                        m::produce_request::PartitionProduceData::default()
                            .with_index(3)
                            .with_records(None),
                    ]),
            ]);
        let bytes = theirs(&req, v);
        seed(ApiKey::Produce, v, &bytes);
        let got = decode(&bytes, |r| ProduceRequest::decode(r, v));
        assert_eq!(got.transactional_id, Some("tx-1"));
        assert_eq!((got.acks, got.timeout_ms), (-1, 1500));
        assert_eq!(got.topics.len(), 1);
        assert_eq!(got.topics[0].name, "t");
        assert_eq!(
            got.topics[0].partitions,
            vec![
                ProducePartitionData {
                    index: 2,
                    records: Some(&records[..])
                },
                ProducePartitionData {
                    index: 3,
                    records: None
                }
            ]
        );

        let log_start = if v >= 5 { 4 } else { -1 };
        let resp = m::ProduceResponse::default()
            .with_responses(vec![
                m::produce_response::TopicProduceResponse::default()
                    .with_name(tn("t"))
                    .with_partition_responses(vec![
                        m::produce_response::PartitionProduceResponse::default()
                            .with_index(2)
                            .with_error_code(0)
                            .with_base_offset(100)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(log_start),
                        m::produce_response::PartitionProduceResponse::default()
                            .with_index(3)
                            .with_error_code(87)
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1),
                    ]),
            ])
            .with_throttle_time_ms(0);
        let mine = ProduceResponse {
            responses: vec![ProduceTopicResponse {
                name: "t",
                partitions: vec![
                    ProducePartitionResponse {
                        index: 2,
                        error_code: ErrorCode::NONE,
                        base_offset: 100,
                        log_append_time_ms: -1,
                        log_start_offset: log_start,
                    },
                    ProducePartitionResponse::error(3, ErrorCode::INVALID_RECORD),
                ],
            }],
            throttle_time_ms: 0,
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn produce_v0_to_2_by_hand() {
    // v0-2 request: acks, timeout, [topic [partition, records]] (no
    // transactional id).
    let body = [
        0, 1, // acks 1
        0, 0, 3, 232, // timeout 1000
        0, 0, 0, 1, // 1 topic
        0, 1, b't', // "t"
        0, 0, 0, 1, // 1 partition
        0, 0, 0, 0, // index 0
        0, 0, 0, 2, 0xaa, 0xbb, // records
    ];
    for v in 0..=2 {
        let got = decode(&body, |r| ProduceRequest::decode(r, v));
        assert_eq!(got.transactional_id, None);
        assert_eq!(got.acks, 1);
        let resp = ProduceResponse::error_for(&got, ErrorCode::UNSUPPORTED_VERSION);
        let bytes = ours(|w| resp.encode(v, w));
        let mut expected = vec![
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, // [topic "t" [
            0, 0, 0, 0, 0, 35, // index 0, error 35
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // base_offset -1
        ];
        if v >= 2 {
            expected.extend_from_slice(&[0xff; 8]); // log_append_time -1
        }
        if v >= 1 {
            expected.extend_from_slice(&[0, 0, 0, 0]); // throttle
        }
        assert_eq!(bytes, expected, "v{v}");
    }
}

#[test]
fn fetch() {
    for v in versions(ApiKey::Fetch) {
        let req = m::FetchRequest::default()
            .with_replica_id(m::BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            .with_isolation_level(1)
            .with_session_id(if v >= 7 { 5 } else { 0 })
            .with_session_epoch(if v >= 7 { 3 } else { -1 })
            .with_topics(vec![
                m::fetch_request::FetchTopic::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![
                        m::fetch_request::FetchPartition::default()
                            .with_partition(1)
                            .with_current_leader_epoch(if v >= 9 { 4 } else { -1 })
                            .with_fetch_offset(99)
                            .with_log_start_offset(if v >= 5 { 7 } else { -1 })
                            .with_partition_max_bytes(1_048_576),
                    ]),
            ])
            .with_forgotten_topics_data(if v >= 7 {
                vec![
                    m::fetch_request::ForgottenTopic::default()
                        .with_topic(tn("old"))
                        .with_partitions(vec![1, 2]),
                ]
            } else {
                vec![]
            })
            .with_rack_id(s(if v >= 11 { "rack-a" } else { "" }));
        let bytes = theirs(&req, v);
        seed(ApiKey::Fetch, v, &bytes);
        let got = decode(&bytes, |r| FetchRequest::decode(r, v));
        assert_eq!(
            (
                got.replica_id,
                got.max_wait_ms,
                got.min_bytes,
                got.max_bytes
            ),
            (-1, 500, 1, 52_428_800)
        );
        assert_eq!(got.isolation_level, 1);
        if v >= 7 {
            assert_eq!((got.session_id, got.session_epoch), (5, 3));
            assert_eq!(
                got.forgotten_topics_data,
                vec![ForgottenTopic {
                    topic: "old",
                    partitions: vec![1, 2]
                }]
            );
        } else {
            assert_eq!((got.session_id, got.session_epoch), (0, -1));
        }
        assert_eq!(got.rack_id, if v >= 11 { "rack-a" } else { "" });
        assert_eq!(
            got.topics,
            vec![FetchTopic {
                topic: "t",
                partitions: vec![FetchPartition {
                    partition: 1,
                    current_leader_epoch: if v >= 9 { 4 } else { -1 },
                    fetch_offset: 99,
                    log_start_offset: if v >= 5 { 7 } else { -1 },
                    partition_max_bytes: 1_048_576,
                }]
            }]
        );

        let records = b"batch-bytes".to_vec();
        let log_start = if v >= 5 { 0 } else { -1 };
        let preferred = if v >= 11 { 3 } else { -1 };
        let error = if v >= 7 { 70 } else { 0 };
        let resp = m::FetchResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(error)
            .with_session_id(0)
            .with_responses(vec![
                m::fetch_response::FetchableTopicResponse::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![
                        m::fetch_response::PartitionData::default()
                            .with_partition_index(1)
                            .with_error_code(0)
                            .with_high_watermark(10)
                            .with_last_stable_offset(10)
                            .with_log_start_offset(log_start)
                            .with_aborted_transactions(Some(vec![
                                m::fetch_response::AbortedTransaction::default()
                                    .with_producer_id(m::ProducerId(8))
                                    .with_first_offset(2),
                            ]))
                            .with_preferred_read_replica(m::BrokerId(preferred))
                            .with_records(Some(records.clone().into())),
                        m::fetch_response::PartitionData::default()
                            .with_partition_index(2)
                            .with_error_code(1)
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_aborted_transactions(None)
                            .with_preferred_read_replica(m::BrokerId(-1))
                            .with_records(None),
                    ]),
            ]);
        let mine = FetchResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode(error),
            session_id: 0,
            responses: vec![FetchTopicResponse {
                topic: "t",
                partitions: vec![
                    FetchPartitionResponse {
                        partition_index: 1,
                        error_code: ErrorCode::NONE,
                        high_watermark: 10,
                        last_stable_offset: 10,
                        log_start_offset: log_start,
                        aborted_transactions: Some(vec![AbortedTransaction {
                            producer_id: 8,
                            first_offset: 2,
                        }]),
                        preferred_read_replica: preferred,
                        records: Some(&records),
                    },
                    FetchPartitionResponse::error(2, ErrorCode::OFFSET_OUT_OF_RANGE),
                ],
            }],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn list_offsets() {
    for v in versions(ApiKey::ListOffsets) {
        let req = m::ListOffsetsRequest::default()
            .with_replica_id(m::BrokerId(-1))
            .with_isolation_level(if v >= 2 { 1 } else { 0 })
            .with_topics(vec![
                m::list_offsets_request::ListOffsetsTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        m::list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_current_leader_epoch(if v >= 4 { 3 } else { -1 })
                            .with_timestamp(EARLIEST_TIMESTAMP),
                    ]),
            ]);
        let bytes = theirs(&req, v);
        seed(ApiKey::ListOffsets, v, &bytes);
        let got = decode(&bytes, |r| ListOffsetsRequest::decode(r, v));
        assert_eq!(got.replica_id, -1);
        assert_eq!(got.isolation_level, if v >= 2 { 1 } else { 0 });
        assert_eq!(
            got.topics,
            vec![ListOffsetsTopic {
                name: "t",
                partitions: vec![ListOffsetsPartition {
                    partition_index: 0,
                    current_leader_epoch: if v >= 4 { 3 } else { -1 },
                    timestamp: -2
                }]
            }]
        );

        let throttle = if v >= 2 { 1 } else { 0 };
        let epoch = if v >= 4 { 0 } else { -1 };
        let resp = m::ListOffsetsResponse::default()
            .with_throttle_time_ms(throttle)
            .with_topics(vec![
                m::list_offsets_response::ListOffsetsTopicResponse::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        m::list_offsets_response::ListOffsetsPartitionResponse::default()
                            .with_partition_index(0)
                            .with_error_code(0)
                            .with_timestamp(-1)
                            .with_offset(42)
                            .with_leader_epoch(epoch),
                    ]),
            ]);
        let mine = ListOffsetsResponse {
            throttle_time_ms: throttle,
            topics: vec![ListOffsetsTopicResponse {
                name: "t",
                partitions: vec![ListOffsetsPartitionResponse {
                    partition_index: 0,
                    error_code: ErrorCode::NONE,
                    timestamp: -1,
                    offset: 42,
                    leader_epoch: epoch,
                }],
            }],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn init_producer_id() {
    for v in versions(ApiKey::InitProducerId) {
        for txn in [None, Some("txn-a")] {
            let req = m::InitProducerIdRequest::default()
                .with_transactional_id(txn.map(|t| m::TransactionalId(s(t))))
                .with_transaction_timeout_ms(60_000);
            let bytes = theirs(&req, v);
            seed(ApiKey::InitProducerId, v, &bytes);
            let got = decode(&bytes, |r| InitProducerIdRequest::decode(r, v));
            assert_eq!(got.transactional_id, txn);
            assert_eq!(got.transaction_timeout_ms, 60_000);
        }
        let resp = m::InitProducerIdResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(0)
            .with_producer_id(m::ProducerId(1_000_001))
            .with_producer_epoch(2);
        let mine = InitProducerIdResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::NONE,
            producer_id: 1_000_001,
            producer_epoch: 2,
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn create_topics() {
    for v in versions(ApiKey::CreateTopics) {
        let req = m::CreateTopicsRequest::default()
            .with_topics(vec![
                m::create_topics_request::CreatableTopic::default()
                    .with_name(tn("new"))
                    .with_num_partitions(3)
                    .with_replication_factor(1)
                    .with_assignments(vec![
                        m::create_topics_request::CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![m::BrokerId(0)]),
                    ])
                    .with_configs(vec![
                        m::create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("cleanup.policy"))
                            .with_value(Some(s("compact"))),
                        m::create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("x"))
                            .with_value(None),
                    ]),
            ])
            .with_timeout_ms(30_000)
            .with_validate_only(true);
        let bytes = theirs(&req, v);
        seed(ApiKey::CreateTopics, v, &bytes);
        let got = decode(&bytes, |r| CreateTopicsRequest::decode(r, v));
        assert_eq!((got.timeout_ms, got.validate_only), (30_000, true));
        assert_eq!(
            got.topics,
            vec![CreatableTopic {
                name: "new",
                num_partitions: 3,
                replication_factor: 1,
                assignments: vec![CreatableReplicaAssignment {
                    partition_index: 0,
                    broker_ids: vec![0]
                }],
                configs: vec![
                    CreatableTopicConfig {
                        name: "cleanup.policy",
                        value: Some("compact")
                    },
                    CreatableTopicConfig {
                        name: "x",
                        value: None
                    }
                ],
            }]
        );
        let resp = m::CreateTopicsResponse::default()
            .with_throttle_time_ms(0)
            .with_topics(vec![
                m::create_topics_response::CreatableTopicResult::default()
                    .with_name(tn("new"))
                    .with_error_code(0)
                    .with_error_message(None),
                m::create_topics_response::CreatableTopicResult::default()
                    .with_name(tn("old"))
                    .with_error_code(36)
                    .with_error_message(Some(s("exists"))),
            ]);
        let mine = CreateTopicsResponse {
            throttle_time_ms: 0,
            topics: vec![
                CreatableTopicResult {
                    name: "new",
                    error_code: ErrorCode::NONE,
                    error_message: None,
                },
                CreatableTopicResult {
                    name: "old",
                    error_code: ErrorCode::TOPIC_ALREADY_EXISTS,
                    error_message: Some("exists"),
                },
            ],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn delete_topics() {
    for v in versions(ApiKey::DeleteTopics) {
        let mine = DeleteTopicsResponse {
            throttle_time_ms: if v >= 1 { 2 } else { 0 },
            responses: vec![DeletableTopicResult {
                name: "gone",
                error_code: ErrorCode::NONE,
            }],
        };
        if v == 0 {
            let body = [0, 0, 0, 1, 0, 1, b'a', 0, 0, 0, 9];
            let got = decode(&body, |r| DeleteTopicsRequest::decode(r, 0));
            assert_eq!((got.topic_names, got.timeout_ms), (vec!["a"], 9));
            let expected = [0, 0, 0, 1, 0, 4, b'g', b'o', b'n', b'e', 0, 0];
            assert_eq!(ours(|w| mine.encode(0, w)), expected);
            continue;
        }
        let req = m::DeleteTopicsRequest::default()
            .with_topic_names(vec![tn("a"), tn("b")])
            .with_timeout_ms(9);
        let bytes = theirs(&req, v);
        seed(ApiKey::DeleteTopics, v, &bytes);
        let got = decode(&bytes, |r| DeleteTopicsRequest::decode(r, v));
        assert_eq!((got.topic_names, got.timeout_ms), (vec!["a", "b"], 9));
        let resp = m::DeleteTopicsResponse::default()
            .with_throttle_time_ms(2)
            .with_responses(vec![
                m::delete_topics_response::DeletableTopicResult::default()
                    .with_name(Some(tn("gone")))
                    .with_error_code(0),
            ]);
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn find_coordinator() {
    for v in versions(ApiKey::FindCoordinator) {
        let req = m::FindCoordinatorRequest::default()
            .with_key(s("group-1"))
            .with_key_type(if v >= 1 { 1 } else { 0 });
        let bytes = theirs(&req, v);
        seed(ApiKey::FindCoordinator, v, &bytes);
        let got = decode(&bytes, |r| FindCoordinatorRequest::decode(r, v));
        assert_eq!(got.key, "group-1");
        assert_eq!(got.key_type, if v >= 1 { KEY_TYPE_TRANSACTION } else { 0 });
        let msg = (v >= 1).then_some("no coordinator");
        let resp = m::FindCoordinatorResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(15)
            .with_error_message(msg.map(s))
            .with_node_id(m::BrokerId(0))
            .with_host(s("10.0.0.1"))
            .with_port(9092);
        let mine = FindCoordinatorResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::COORDINATOR_NOT_AVAILABLE,
            error_message: msg,
            node_id: 0,
            host: "10.0.0.1",
            port: 9092,
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn join_group() {
    for v in versions(ApiKey::JoinGroup) {
        let instance = (v >= 5).then_some("instance-1");
        let req = m::JoinGroupRequest::default()
            .with_group_id(gid("g"))
            .with_session_timeout_ms(45_000)
            .with_rebalance_timeout_ms(if v >= 1 { 300_000 } else { -1 })
            .with_member_id(s(""))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                m::join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(b"\x00\x01meta".to_vec().into()),
                m::join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("roundrobin"))
                    .with_metadata(Vec::new().into()),
            ]);
        let bytes = theirs(&req, v);
        seed(ApiKey::JoinGroup, v, &bytes);
        let got = decode(&bytes, |r| JoinGroupRequest::decode(r, v));
        assert_eq!(got.group_id, "g");
        assert_eq!(got.session_timeout_ms, 45_000);
        assert_eq!(
            got.rebalance_timeout_ms,
            if v >= 1 { 300_000 } else { 45_000 }
        );
        assert_eq!((got.member_id, got.group_instance_id), ("", instance));
        assert_eq!(got.protocol_type, "consumer");
        assert_eq!(
            got.protocols,
            vec![
                JoinGroupProtocol {
                    name: "range",
                    metadata: b"\x00\x01meta"
                },
                JoinGroupProtocol {
                    name: "roundrobin",
                    metadata: b""
                }
            ]
        );

        let throttle = if v >= 2 { 5 } else { 0 };
        let resp = m::JoinGroupResponse::default()
            .with_throttle_time_ms(throttle)
            .with_error_code(0)
            .with_generation_id(4)
            .with_protocol_name(Some(s("range")))
            .with_leader(s("m-1"))
            .with_member_id(s("m-2"))
            .with_members(vec![
                m::join_group_response::JoinGroupResponseMember::default()
                    .with_member_id(s("m-1"))
                    .with_group_instance_id(instance.map(s))
                    .with_metadata(b"md".to_vec().into()),
            ]);
        let mine = JoinGroupResponse {
            throttle_time_ms: throttle,
            error_code: ErrorCode::NONE,
            generation_id: 4,
            protocol_name: "range",
            leader: "m-1",
            member_id: "m-2",
            members: vec![JoinGroupMember {
                member_id: "m-1",
                group_instance_id: instance,
                metadata: b"md",
            }],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn sync_group() {
    for v in versions(ApiKey::SyncGroup) {
        let instance = (v >= 3).then_some("i");
        let req = m::SyncGroupRequest::default()
            .with_group_id(gid("g"))
            .with_generation_id(4)
            .with_member_id(s("m-1"))
            .with_group_instance_id(instance.map(s))
            .with_assignments(vec![
                m::sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s("m-1"))
                    .with_assignment(b"assign".to_vec().into()),
            ]);
        let bytes = theirs(&req, v);
        seed(ApiKey::SyncGroup, v, &bytes);
        let got = decode(&bytes, |r| SyncGroupRequest::decode(r, v));
        assert_eq!(
            got,
            SyncGroupRequest {
                group_id: "g",
                generation_id: 4,
                member_id: "m-1",
                group_instance_id: instance,
                assignments: vec![SyncGroupAssignment {
                    member_id: "m-1",
                    assignment: b"assign"
                }],
            }
        );
        let resp = m::SyncGroupResponse::default()
            .with_error_code(27)
            .with_assignment(b"assign".to_vec().into());
        let mine = SyncGroupResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::REBALANCE_IN_PROGRESS,
            assignment: b"assign",
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn heartbeat() {
    for v in versions(ApiKey::Heartbeat) {
        let instance = (v >= 3).then_some("i");
        let req = m::HeartbeatRequest::default()
            .with_group_id(gid("g"))
            .with_generation_id(4)
            .with_member_id(s("m-1"))
            .with_group_instance_id(instance.map(s));
        let bytes = theirs(&req, v);
        seed(ApiKey::Heartbeat, v, &bytes);
        let got = decode(&bytes, |r| HeartbeatRequest::decode(r, v));
        assert_eq!(
            got,
            HeartbeatRequest {
                group_id: "g",
                generation_id: 4,
                member_id: "m-1",
                group_instance_id: instance
            }
        );
        let throttle = if v >= 1 { 3 } else { 0 };
        let resp = m::HeartbeatResponse::default()
            .with_throttle_time_ms(throttle)
            .with_error_code(25);
        let mine = HeartbeatResponse {
            throttle_time_ms: throttle,
            error_code: ErrorCode::UNKNOWN_MEMBER_ID,
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn leave_group() {
    for v in versions(ApiKey::LeaveGroup) {
        let mut req = m::LeaveGroupRequest::default().with_group_id(gid("g"));
        if v >= 3 {
            req = req.with_members(vec![
                m::leave_group_request::MemberIdentity::default()
                    .with_member_id(s("m-1"))
                    .with_group_instance_id(None),
                m::leave_group_request::MemberIdentity::default()
                    .with_member_id(s("m-2"))
                    .with_group_instance_id(Some(s("i-2"))),
            ]);
        } else {
            req = req.with_member_id(s("m-1"));
        }
        let bytes = theirs(&req, v);
        seed(ApiKey::LeaveGroup, v, &bytes);
        let got = decode(&bytes, |r| LeaveGroupRequest::decode(r, v));
        let mut expected = vec![MemberIdentity {
            member_id: "m-1",
            group_instance_id: None,
        }];
        if v >= 3 {
            expected.push(MemberIdentity {
                member_id: "m-2",
                group_instance_id: Some("i-2"),
            });
        }
        assert_eq!(got.group_id, "g");
        assert_eq!(got.members, expected);

        let members = if v >= 3 {
            vec![
                m::leave_group_response::MemberResponse::default()
                    .with_member_id(s("m-1"))
                    .with_group_instance_id(None)
                    .with_error_code(0),
                m::leave_group_response::MemberResponse::default()
                    .with_member_id(s("m-2"))
                    .with_group_instance_id(Some(s("i-2")))
                    .with_error_code(25),
            ]
        } else {
            vec![]
        };
        let resp = m::LeaveGroupResponse::default()
            .with_error_code(0)
            .with_members(members);
        let mine = LeaveGroupResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::NONE,
            members: vec![
                LeaveGroupMemberResponse {
                    member_id: "m-1",
                    group_instance_id: None,
                    error_code: ErrorCode::NONE,
                },
                LeaveGroupMemberResponse {
                    member_id: "m-2",
                    group_instance_id: Some("i-2"),
                    error_code: ErrorCode::UNKNOWN_MEMBER_ID,
                },
            ],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn offset_commit() {
    for v in versions(ApiKey::OffsetCommit) {
        let instance = (v >= 7).then_some("i");
        let retention = if v <= 4 { 86_400_000 } else { -1 };
        let epoch = if v >= 6 { 5 } else { -1 };
        let req = m::OffsetCommitRequest::default()
            .with_group_id(gid("g"))
            .with_generation_id_or_member_epoch(4)
            .with_member_id(s("m-1"))
            .with_group_instance_id(instance.map(s))
            .with_retention_time_ms(retention)
            .with_topics(vec![
                m::offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        m::offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42)
                            .with_committed_leader_epoch(epoch)
                            .with_committed_metadata(Some(s("meta"))),
                        m::offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(7)
                            .with_committed_leader_epoch(epoch)
                            .with_committed_metadata(None),
                    ]),
            ]);
        let bytes = theirs(&req, v);
        seed(ApiKey::OffsetCommit, v, &bytes);
        let got = decode(&bytes, |r| OffsetCommitRequest::decode(r, v));
        assert_eq!(
            got,
            OffsetCommitRequest {
                group_id: "g",
                generation_id: 4,
                member_id: "m-1",
                group_instance_id: instance,
                retention_time_ms: retention,
                topics: vec![OffsetCommitTopic {
                    name: "t",
                    partitions: vec![
                        OffsetCommitPartition {
                            partition_index: 0,
                            committed_offset: 42,
                            committed_leader_epoch: epoch,
                            committed_metadata: Some("meta")
                        },
                        OffsetCommitPartition {
                            partition_index: 1,
                            committed_offset: 7,
                            committed_leader_epoch: epoch,
                            committed_metadata: None
                        }
                    ]
                }]
            }
        );
        let throttle = if v >= 3 { 1 } else { 0 };
        let resp = m::OffsetCommitResponse::default()
            .with_throttle_time_ms(throttle)
            .with_topics(vec![
                m::offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        m::offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_partition_index(0)
                            .with_error_code(22),
                    ]),
            ]);
        let mine = OffsetCommitResponse {
            throttle_time_ms: throttle,
            topics: vec![OffsetCommitTopicResponse {
                name: "t",
                partitions: vec![OffsetCommitPartitionResponse {
                    partition_index: 0,
                    error_code: ErrorCode::ILLEGAL_GENERATION,
                }],
            }],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn offset_fetch() {
    for v in versions(ApiKey::OffsetFetch) {
        let req = m::OffsetFetchRequest::default()
            .with_group_id(gid("g"))
            .with_topics(Some(vec![
                m::offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(tn("t"))
                    .with_partition_indexes(vec![0, 1]),
            ]));
        let bytes = theirs(&req, v);
        seed(ApiKey::OffsetFetch, v, &bytes);
        let got = decode(&bytes, |r| OffsetFetchRequest::decode(r, v));
        assert_eq!(got.group_id, "g");
        assert_eq!(
            got.topics,
            Some(vec![OffsetFetchTopic {
                name: "t",
                partition_indexes: vec![0, 1]
            }])
        );
        if v >= 2 {
            let bytes = theirs(
                &m::OffsetFetchRequest::default()
                    .with_group_id(gid("g"))
                    .with_topics(None),
                v,
            );
            assert_eq!(
                decode(&bytes, |r| OffsetFetchRequest::decode(r, v)).topics,
                None
            );
        }
        let throttle = if v >= 3 { 1 } else { 0 };
        let epoch = if v >= 5 { 0 } else { -1 };
        let resp = m::OffsetFetchResponse::default()
            .with_throttle_time_ms(throttle)
            .with_topics(vec![
                m::offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        m::offset_fetch_response::OffsetFetchResponsePartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(s("")))
                            .with_error_code(0),
                        m::offset_fetch_response::OffsetFetchResponsePartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(-1)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(None)
                            .with_error_code(0),
                    ]),
            ])
            .with_error_code(0);
        let mine = OffsetFetchResponse {
            throttle_time_ms: throttle,
            topics: vec![OffsetFetchTopicResponse {
                name: "t",
                partitions: vec![
                    OffsetFetchPartition {
                        partition_index: 0,
                        committed_offset: 42,
                        committed_leader_epoch: epoch,
                        metadata: Some(""),
                        error_code: ErrorCode::NONE,
                    },
                    OffsetFetchPartition {
                        partition_index: 1,
                        committed_offset: -1,
                        committed_leader_epoch: epoch,
                        metadata: None,
                        error_code: ErrorCode::NONE,
                    },
                ],
            }],
            error_code: ErrorCode::NONE,
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn describe_groups() {
    for v in versions(ApiKey::DescribeGroups) {
        let req = m::DescribeGroupsRequest::default()
            .with_groups(vec![gid("g1"), gid("g2")])
            .with_include_authorized_operations(v >= 3);
        let bytes = theirs(&req, v);
        seed(ApiKey::DescribeGroups, v, &bytes);
        let got = decode(&bytes, |r| DescribeGroupsRequest::decode(r, v));
        assert_eq!(got.groups, vec!["g1", "g2"]);
        assert_eq!(got.include_authorized_operations, v >= 3);
        let instance = (v >= 4).then_some("i");
        let ops = if v >= 3 { 0x10 } else { i32::MIN };
        let resp = m::DescribeGroupsResponse::default().with_groups(vec![
            m::describe_groups_response::DescribedGroup::default()
                .with_error_code(0)
                .with_group_id(gid("g1"))
                .with_group_state(s("Stable"))
                .with_protocol_type(s("consumer"))
                .with_protocol_data(s("range"))
                .with_members(vec![
                    m::describe_groups_response::DescribedGroupMember::default()
                        .with_member_id(s("m-1"))
                        .with_group_instance_id(instance.map(s))
                        .with_client_id(s("rdkafka"))
                        .with_client_host(s("/127.0.0.1"))
                        .with_member_metadata(b"md".to_vec().into())
                        .with_member_assignment(b"as".to_vec().into()),
                ])
                .with_authorized_operations(ops),
        ]);
        let mine = DescribeGroupsResponse {
            throttle_time_ms: 0,
            groups: vec![DescribedGroup {
                error_code: ErrorCode::NONE,
                group_id: "g1",
                group_state: "Stable",
                protocol_type: "consumer",
                protocol_data: "range",
                members: vec![DescribedGroupMember {
                    member_id: "m-1",
                    group_instance_id: instance,
                    client_id: "rdkafka",
                    client_host: "/127.0.0.1",
                    member_metadata: b"md",
                    member_assignment: b"as",
                }],
                authorized_operations: ops,
            }],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn list_groups() {
    for v in versions(ApiKey::ListGroups) {
        let bytes = theirs(&m::ListGroupsRequest::default(), v);
        seed(ApiKey::ListGroups, v, &bytes);
        decode(&bytes, |r| ListGroupsRequest::decode(r, v));
        let resp = m::ListGroupsResponse::default()
            .with_error_code(0)
            .with_groups(vec![
                m::list_groups_response::ListedGroup::default()
                    .with_group_id(gid("g1"))
                    .with_protocol_type(s("consumer")),
            ]);
        let mine = ListGroupsResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::NONE,
            groups: vec![ListedGroup {
                group_id: "g1",
                protocol_type: "consumer",
            }],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn sasl() {
    for v in versions(ApiKey::SaslHandshake) {
        let bytes = theirs(
            &m::SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
            v,
        );
        seed(ApiKey::SaslHandshake, v, &bytes);
        assert_eq!(
            decode(&bytes, |r| SaslHandshakeRequest::decode(r, v)).mechanism,
            "PLAIN"
        );
        let resp = m::SaslHandshakeResponse::default()
            .with_error_code(33)
            .with_mechanisms(vec![s("PLAIN")]);
        let mine = SaslHandshakeResponse {
            error_code: ErrorCode::UNSUPPORTED_SASL_MECHANISM,
            mechanisms: &["PLAIN"],
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
    for v in versions(ApiKey::SaslAuthenticate) {
        let token = b"\0user\0pass".to_vec();
        let bytes = theirs(
            &m::SaslAuthenticateRequest::default().with_auth_bytes(token.clone().into()),
            v,
        );
        seed(ApiKey::SaslAuthenticate, v, &bytes);
        assert_eq!(
            decode(&bytes, |r| SaslAuthenticateRequest::decode(r, v)).auth_bytes,
            &token[..]
        );
        let lifetime = if v >= 1 { 3_600_000 } else { 0 };
        let resp = m::SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(s("bad password")))
            .with_auth_bytes(Vec::new().into())
            .with_session_lifetime_ms(lifetime);
        let mine = SaslAuthenticateResponse {
            error_code: ErrorCode::SASL_AUTHENTICATION_FAILED,
            error_message: Some("bad password"),
            auth_bytes: b"",
            session_lifetime_ms: lifetime,
        };
        same_response(v, &resp, ours(|w| mine.encode(v, w)));
    }
}

#[test]
fn describe_configs() {
    let entry = |v: i16| DescribeConfigsEntry {
        name: "retention.ms",
        value: Some("604800000"),
        read_only: false,
        is_default: true,
        config_source: 5,
        is_sensitive: false,
        synonyms: if v >= 1 {
            vec![DescribeConfigsSynonym {
                name: "log.retention.ms",
                value: None,
                source: 5,
            }]
        } else {
            vec![]
        },
    };
    let mine = |v: i16| DescribeConfigsResponse {
        throttle_time_ms: 0,
        results: vec![DescribeConfigsResult {
            error_code: ErrorCode::NONE,
            error_message: None,
            resource_type: RESOURCE_TOPIC,
            resource_name: "t",
            configs: vec![entry(v)],
        }],
    };
    for v in versions(ApiKey::DescribeConfigs) {
        if v == 0 {
            let body = [
                0, 0, 0, 1, 2, 0, 1, b't', 0xff, 0xff, 0xff, 0xff, // [topic "t" null]
            ];
            let got = decode(&body, |r| DescribeConfigsRequest::decode(r, 0));
            assert_eq!(got.resources[0].configuration_keys, None);
            let mut expected = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 2, 0, 1, b't'];
            expected.extend_from_slice(&[0, 0, 0, 1, 0, 12]);
            expected.extend_from_slice(b"retention.ms");
            expected.extend_from_slice(&[0, 9]);
            expected.extend_from_slice(b"604800000");
            expected.extend_from_slice(&[0, 1, 0]); // read_only, is_default, is_sensitive
            assert_eq!(ours(|w| mine(0).encode(0, w)), expected);
            continue;
        }
        let req = m::DescribeConfigsRequest::default()
            .with_resources(vec![
                m::describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
                m::describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("0"))
                    .with_configuration_keys(None),
            ])
            .with_include_synonyms(true);
        let bytes = theirs(&req, v);
        seed(ApiKey::DescribeConfigs, v, &bytes);
        let got = decode(&bytes, |r| DescribeConfigsRequest::decode(r, v));
        assert!(got.include_synonyms);
        assert_eq!(
            got.resources,
            vec![
                DescribeConfigsResource {
                    resource_type: RESOURCE_TOPIC,
                    resource_name: "t",
                    configuration_keys: Some(vec!["retention.ms"])
                },
                DescribeConfigsResource {
                    resource_type: RESOURCE_BROKER,
                    resource_name: "0",
                    configuration_keys: None
                }
            ]
        );
        let resp = m::DescribeConfigsResponse::default().with_results(vec![
            m::describe_configs_response::DescribeConfigsResult::default()
                .with_error_code(0)
                .with_error_message(None)
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![
                    m::describe_configs_response::DescribeConfigsResourceResult::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("604800000")))
                        .with_read_only(false)
                        .with_config_source(5)
                        .with_is_sensitive(false)
                        .with_synonyms(vec![
                            m::describe_configs_response::DescribeConfigsSynonym::default()
                                .with_name(s("log.retention.ms"))
                                .with_value(None)
                                .with_source(5),
                        ]),
                ]),
        ]);
        same_response(v, &resp, ours(|w| mine(v).encode(v, w)));
    }
}

/// Every request decoder, fed every prefix of a valid body, returns an
/// error or a value and never panics; truncation inside a field is always
/// an error.
#[test]
fn truncated_requests_are_errors() {
    let mut cases: Vec<(ApiKey, i16, Vec<u8>)> = Vec::new();
    for v in versions(ApiKey::Fetch) {
        let req = m::FetchRequest::default()
            .with_replica_id(m::BrokerId(-1))
            .with_topics(vec![
                m::fetch_request::FetchTopic::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![m::fetch_request::FetchPartition::default()]),
            ])
            .with_rack_id(s(""));
        cases.push((ApiKey::Fetch, v, theirs(&req, v)));
    }
    for v in versions(ApiKey::JoinGroup) {
        let req = m::JoinGroupRequest::default()
            .with_group_id(gid("g"))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                m::join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(b"x".to_vec().into()),
            ]);
        cases.push((ApiKey::JoinGroup, v, theirs(&req, v)));
    }
    let req = m::ApiVersionsRequest::default()
        .with_client_software_name(s("a"))
        .with_client_software_version(s("b"));
    cases.push((ApiKey::ApiVersions, 3, theirs(&req, 3)));
    for (key, v, body) in cases {
        let header = RequestHeader {
            api_key: key as i16,
            api_version: v,
            correlation_id: 0,
            client_id: None,
        };
        assert!(Request::decode(&header, &body).is_ok(), "{key:?} v{v}");
        for cut in 0..body.len() {
            assert!(
                Request::decode(&header, &body[..cut]).is_err(),
                "{key:?} v{v} cut at {cut}"
            );
        }
    }
}
