//! One Kafka client connection: framing, authentication (SASL/PLAIN with
//! the broker's token as the password), and the handlers that turn Kafka
//! requests into broker calls and responses.
//!
//! Requests on a connection are answered in order, as Kafka does: a fetch
//! that waits for data (`max_wait_ms`, `min_bytes`) parks the connection,
//! and a produce with `acks` 1 or -1 queues its response pending on the
//! appends' tickets, so it goes out only once the batches are as durable
//! as `--fsync` promises (rewritten with `KAFKA_STORAGE_ERROR` for the
//! partitions whose append failed). With `acks=0` nothing is answered.

use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::api::api_versions::ApiVersionsResponse;
use super::api::create_topics::{CreatableTopicResult, CreateTopicsRequest, CreateTopicsResponse};
use super::api::describe_configs::{
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeConfigsResult, RESOURCE_BROKER,
    RESOURCE_TOPIC,
};
use super::api::fetch::{FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse};
use super::api::find_coordinator::{
    FindCoordinatorRequest, FindCoordinatorResponse, KEY_TYPE_GROUP,
};
use super::api::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use super::api::list_offsets::{
    EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, ListOffsetsPartitionResponse, ListOffsetsRequest,
    ListOffsetsResponse, ListOffsetsTopicResponse,
};
use super::api::metadata::{
    MetadataBroker, MetadataPartition, MetadataRequest, MetadataResponse, MetadataTopic,
};
use super::api::offset_commit::{
    OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetCommitTopicResponse,
};
use super::api::offset_fetch::{
    OffsetFetchPartition, OffsetFetchRequest, OffsetFetchResponse, OffsetFetchTopicResponse,
};
use super::api::produce::{
    ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopicResponse,
};
use super::api::sasl_authenticate::{SaslAuthenticateResponse, parse_plain};
use super::api::sasl_handshake::{SaslHandshakeRequest, SaslHandshakeResponse};
use super::batch::{self, Batches};
use super::error::ErrorCode;
use super::frame::{Frame, FrameDecoder, encode_response};
use super::header::{RequestHeader, peek_ids};
use super::versions::ApiKey;
use super::wire::DecodeError;
use super::{Request, groups};
use crate::broker::{
    BatchRefusal, CommitError, PartitionId, ReadError, Ticket, TopicError, TopicId, Wake,
    WriteError,
};
use crate::protocol::{Control, Ctx};
use crate::storage::Format;
use crate::util::is_valid_name;

/// The node id of this broker in every Metadata response.
pub const NODE_ID: i32 = 0;
/// Replicas and in-sync replicas of every partition: this node.
const REPLICAS: &[i32] = &[NODE_ID];

/// How a connection is to describe this broker to its client.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub host: String,
    pub port: i32,
}

/// A `Fetch` waiting for data: what is needed to answer it later.
#[derive(Debug)]
struct ParkedFetch {
    correlation_id: i32,
    version: i16,
    header_version: i16,
    min_bytes: usize,
    max_bytes: usize,
    deadline: Instant,
    topics: Vec<(String, Vec<WantedPartition>)>,
}

/// A partition a fetch asks for: (index, fetch offset, partition max bytes).
type WantedPartition = (i32, i64, usize);

/// What a fetch found in a partition: (index, error, high watermark, log
/// start, where its records are in the data read).
type FetchedPartition = (i32, ErrorCode, i64, i64, std::ops::Range<usize>);

/// One Kafka connection: its frame decoder and its state.
#[derive(Debug)]
pub struct KafkaSession {
    decoder: FrameDecoder,
    s: State,
}

#[derive(Debug)]
struct State {
    advertised: Advertised,
    authenticated: bool,
    /// After a v0 SaslHandshake the next frame is a bare PLAIN token.
    raw_sasl_next: bool,
    /// The mechanism was agreed (SaslHandshake), so SaslAuthenticate may
    /// follow.
    handshake_done: bool,
    parked: Option<ParkedFetch>,
    /// A JoinGroup or SyncGroup waiting in the broker.
    group_wait: Option<groups::ParkedGroup>,
}

impl KafkaSession {
    pub fn new(max_request_bytes: usize, authenticated: bool, advertised: Advertised) -> Self {
        KafkaSession {
            decoder: FrameDecoder::new(max_request_bytes),
            s: State {
                advertised,
                authenticated,
                raw_sasl_next: false,
                handshake_done: false,
                parked: None,
                group_wait: None,
            },
        }
    }

    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    pub fn is_parked(&self) -> bool {
        self.s.parked.is_some() || self.s.group_wait.is_some()
    }

    /// Whether part of a request frame has been read.
    pub fn in_request(&self) -> bool {
        self.decoder.buffered() > 0 || self.decoder.is_discarding()
    }

    /// Decodes and handles the requests in `input`; see
    /// `TextSession::handle_input` for what the result means.
    pub fn handle_input(&mut self, ctx: &mut Ctx<'_>, input: &[u8]) -> (usize, Control) {
        let mut used = 0;
        while used < input.len() {
            if ctx.out.pending() >= ctx.max_output {
                return (used, Control::Pause);
            }
            let (n, frame) = self.decoder.decode(&input[used..]);
            used += n;
            let control = match frame {
                None => Control::Continue,
                Some(Frame::Request(frame)) => self.s.request(ctx, frame),
                Some(Frame::TooLarge { size }) => {
                    debug!(
                        "peer={} kafka request of {size} bytes is over --max-request-bytes; closing",
                        ctx.peer
                    );
                    Control::Quit
                }
                Some(Frame::Invalid { size }) => {
                    debug!("peer={} kafka frame size {size}; closing", ctx.peer);
                    Control::Quit
                }
            };
            match control {
                Control::Continue | Control::Pause => {}
                Control::Park | Control::Yield => return (used, control),
                Control::Quit => return (input.len(), Control::Quit),
            }
        }
        (used, Control::Continue)
    }

    /// The connection's wait ended: answers (or re-parks) a parked fetch
    /// or group request. Returns whether it can read requests again.
    pub fn on_wake(&mut self, ctx: &mut Ctx<'_>, wake: Wake) -> bool {
        if let Some(f) = self.s.parked.take() {
            ctx.broker.stats.parked_fetches -= 1;
            return self.s.answer_or_park(ctx, f, wake == Wake::Timeout) != Control::Park;
        }
        groups::on_wake(ctx, &mut self.s.group_wait)
    }

    /// The connection is closing.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        if self.s.parked.take().is_some() {
            ctx.broker.stats.parked_fetches -= 1;
        }
        self.s.group_wait = None;
        ctx.broker.connection_closed(ctx.conn);
    }
}

impl State {
    fn request(&mut self, ctx: &mut Ctx<'_>, frame: &[u8]) -> Control {
        if self.raw_sasl_next {
            self.raw_sasl_next = false;
            return self.raw_sasl(ctx, frame);
        }
        let (header, body) = match RequestHeader::decode(frame) {
            Ok(decoded) => decoded,
            Err(e) => {
                debug!(
                    "peer={} kafka request header {:?}: {e}; closing",
                    ctx.peer,
                    peek_ids(frame)
                );
                return Control::Quit;
            }
        };
        let api = ApiKey::from_i16(header.api_key);
        if !self.authenticated
            && !matches!(
                api,
                Some(ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
            )
        {
            debug!(
                "peer={} kafka api {} before authenticating; closing",
                ctx.peer, header.api_key
            );
            return Control::Quit;
        }
        let request = match Request::decode(&header, body) {
            Ok(r) => r,
            Err(DecodeError::UnsupportedVersion { api_key: 18, .. }) => {
                // Clients retry lower: the answer is shaped as v0.
                encode_response(ctx.out.buf_mut(), header.correlation_id, 0, |w| {
                    ApiVersionsResponse::unsupported_version().encode(0, w)
                });
                return Control::Continue;
            }
            Err(e) => {
                debug!(
                    "peer={} kafka api {} v{}: {e}; closing",
                    ctx.peer, header.api_key, header.api_version
                );
                return Control::Quit;
            }
        };
        match request {
            Request::ApiVersions(_) => {
                let out = ctx.out.buf_mut();
                header.respond(out, |w, v| ApiVersionsResponse::supported().encode(v, w));
            }
            Request::SaslHandshake(r) => return self.sasl_handshake(ctx, &header, &r),
            Request::SaslAuthenticate(r) => {
                if !self.handshake_done {
                    debug!("peer={} SaslAuthenticate without a handshake", ctx.peer);
                    return Control::Quit;
                }
                let ok = self.check_plain(ctx, r.auth_bytes);
                let resp = SaslAuthenticateResponse {
                    error_code: if ok {
                        ErrorCode::NONE
                    } else {
                        ErrorCode::SASL_AUTHENTICATION_FAILED
                    },
                    error_message: (!ok).then_some("Authentication failed: invalid credentials"),
                    auth_bytes: &[],
                    session_lifetime_ms: 0,
                };
                header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
                if !ok {
                    return Control::Quit;
                }
            }
            Request::Metadata(r) => self.metadata(ctx, &header, &r),
            Request::Produce(r) => return self.produce(ctx, &header, &r),
            Request::Fetch(r) => return self.fetch(ctx, &header, &r),
            Request::ListOffsets(r) => list_offsets(ctx, &header, &r),
            Request::InitProducerId(r) => init_producer_id(ctx, &header, &r),
            Request::CreateTopics(r) => create_topics(ctx, &header, &r),
            Request::FindCoordinator(r) => self.find_coordinator(ctx, &header, &r),
            Request::OffsetCommit(r) => offset_commit(ctx, &header, &r),
            Request::OffsetFetch(r) => offset_fetch(ctx, &header, &r),
            Request::DescribeConfigs(r) => describe_configs(ctx, &header, &r),
            Request::JoinGroup(r) => return groups::join(ctx, &header, &r, &mut self.group_wait),
            Request::SyncGroup(r) => return groups::sync(ctx, &header, &r, &mut self.group_wait),
            Request::Heartbeat(r) => groups::heartbeat(ctx, &header, &r),
            Request::LeaveGroup(r) => groups::leave(ctx, &header, &r),
            Request::DescribeGroups(r) => groups::describe(ctx, &header, &r),
            Request::ListGroups(r) => groups::list(ctx, &header, &r),
            Request::DeleteTopics(r) => groups::delete_topics(ctx, &header, &r),
        }
        Control::Continue
    }

    fn sasl_handshake(
        &mut self,
        ctx: &mut Ctx<'_>,
        header: &RequestHeader<'_>,
        r: &SaslHandshakeRequest<'_>,
    ) -> Control {
        let ok = r.mechanism == "PLAIN";
        let resp = SaslHandshakeResponse {
            error_code: if ok {
                ErrorCode::NONE
            } else {
                ErrorCode::UNSUPPORTED_SASL_MECHANISM
            },
            mechanisms: &["PLAIN"],
        };
        header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
        if ok {
            self.handshake_done = true;
            // v0: the token follows as a bare frame, not a request.
            self.raw_sasl_next = header.api_version == 0;
        }
        Control::Continue
    }

    /// A bare SASL/PLAIN token after a v0 handshake: answered with an empty
    /// frame if good; a bad one closes the connection.
    fn raw_sasl(&mut self, ctx: &mut Ctx<'_>, token: &[u8]) -> Control {
        if self.check_plain(ctx, token) {
            ctx.out.push(&[0, 0, 0, 0]);
            Control::Continue
        } else {
            Control::Quit
        }
    }

    /// Whether a SASL/PLAIN token carries the broker's token as password
    /// (any user name). Authentication off: anything goes.
    fn check_plain(&mut self, ctx: &mut Ctx<'_>, token: &[u8]) -> bool {
        if !ctx.broker.auth_required() {
            self.authenticated = true;
            return true;
        }
        let ok = parse_plain(token).is_some_and(|t| ctx.broker.check_token(t.password));
        if ok {
            self.authenticated = true;
        } else {
            warn!("peer={} kafka SASL/PLAIN authentication failed", ctx.peer);
        }
        ok
    }

    fn metadata(&mut self, ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &MetadataRequest<'_>) {
        // v0: an empty list means all topics; v1+: null means all.
        let all = match &r.topics {
            None => true,
            Some(list) => list.is_empty() && header.api_version == 0,
        };
        // v0-3 imply auto-creation; v4+ say.
        let allow_create = r.allow_auto_topic_creation || header.api_version < 4;
        let mut wanted: Vec<(String, Result<TopicId, ErrorCode>)> = Vec::new();
        if all {
            for (id, name) in ctx.broker.topic_ids() {
                wanted.push((String::from_utf8_lossy(name).into_owned(), Ok(id)));
            }
        } else {
            for name in r.topics.iter().flatten() {
                let id = topic_for(ctx, name, allow_create);
                wanted.push((name.to_string(), id));
            }
        }
        let broker = &*ctx.broker;
        let topics: Vec<MetadataTopic<'_>> = wanted
            .iter()
            .map(|(name, id)| match id {
                Ok(id) => MetadataTopic {
                    error_code: ErrorCode::NONE,
                    name,
                    is_internal: false,
                    partitions: (0..broker.partition_count(*id))
                        .map(|p| MetadataPartition {
                            error_code: ErrorCode::NONE,
                            partition_index: p as i32,
                            leader_id: NODE_ID,
                            leader_epoch: 0,
                            replica_nodes: REPLICAS,
                            isr_nodes: REPLICAS,
                            offline_replicas: &[],
                        })
                        .collect(),
                    topic_authorized_operations: i32::MIN,
                },
                Err(code) => MetadataTopic {
                    error_code: *code,
                    name,
                    is_internal: false,
                    partitions: Vec::new(),
                    topic_authorized_operations: i32::MIN,
                },
            })
            .collect();
        let resp = MetadataResponse {
            throttle_time_ms: 0,
            brokers: vec![MetadataBroker {
                node_id: NODE_ID,
                host: &self.advertised.host,
                port: self.advertised.port,
                rack: None,
            }],
            cluster_id: Some(broker.cluster_id()),
            controller_id: NODE_ID,
            topics,
            cluster_authorized_operations: i32::MIN,
        };
        let mut out = Vec::new();
        header.respond(&mut out, |w, v| resp.encode(v, w));
        ctx.out.push(&out);
    }

    /// A Produce request. With acks=0 nothing is answered, so a refused
    /// batch closes the connection (as Kafka does): the producer notices
    /// the close, where a dropped batch would vanish without a sign.
    fn produce(
        &mut self,
        ctx: &mut Ctx<'_>,
        header: &RequestHeader<'_>,
        r: &ProduceRequest<'_>,
    ) -> Control {
        if header.api_version < 3 {
            // Legacy message sets: not stored here.
            let resp = ProduceResponse::error_for(r, ErrorCode::UNSUPPORTED_VERSION);
            if r.acks != 0 {
                header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
                return Control::Continue;
            }
            return Control::Quit;
        }
        let mut topics: Vec<(String, Vec<ProducePartitionResponse>)> = Vec::new();
        // (ticket, topic index, partition index) of each pending append.
        let mut pending: Vec<(Ticket, usize, usize)> = Vec::new();
        for (ti, t) in r.topics.iter().enumerate() {
            let topic = ctx.broker.lookup(t.name.as_bytes());
            let mut parts = Vec::new();
            for (pi, part) in t.partitions.iter().enumerate() {
                let resp = match topic {
                    None => ProducePartitionResponse::error(
                        part.index,
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    ),
                    Some(topic) => {
                        match self.produce_partition(ctx, topic, part.index, part.records) {
                            Ok((ticket, is_pending)) => {
                                if is_pending {
                                    pending.push((ticket, ti, pi));
                                }
                                ProducePartitionResponse {
                                    index: part.index,
                                    error_code: ErrorCode::NONE,
                                    base_offset: ticket.offset as i64,
                                    log_append_time_ms: -1,
                                    log_start_offset: ctx.broker.first_offset(PartitionId {
                                        topic,
                                        partition: part.index as u32,
                                    }) as i64,
                                }
                            }
                            Err(code) => ProducePartitionResponse::error(part.index, code),
                        }
                    }
                };
                parts.push(resp);
            }
            topics.push((t.name.to_string(), parts));
        }
        if r.acks == 0 {
            let refused = topics
                .iter()
                .flat_map(|(_, parts)| parts)
                .find(|p| p.error_code != ErrorCode::NONE);
            if let Some(p) = refused {
                debug!(
                    "peer={} acks=0 produce refused (error {}); closing",
                    ctx.peer, p.error_code.0
                );
                return Control::Quit;
            }
            return Control::Continue;
        }
        let (correlation_id, version, header_version) = (
            header.correlation_id,
            header.api_version,
            header.response_header_version(),
        );
        let tickets: Vec<Ticket> = pending.iter().map(|(t, _, _)| *t).collect();
        let render = move |topics: &[(String, Vec<ProducePartitionResponse>)],
                           out: &mut Vec<u8>| {
            let resp = ProduceResponse {
                responses: topics
                    .iter()
                    .map(|(name, parts)| ProduceTopicResponse {
                        name,
                        partitions: parts.clone(),
                    })
                    .collect(),
                throttle_time_ms: 0,
            };
            encode_response(out, correlation_id, header_version, |w| {
                resp.encode(version, w)
            });
        };
        let mut first = Vec::new();
        render(&topics, &mut first);
        ctx.out.push_pending(
            &tickets,
            |buf| buf.extend_from_slice(&first),
            Box::new(move |failures: &[Option<Rc<WriteError>>]| {
                let mut topics = topics;
                for ((_, ti, pi), failure) in pending.iter().zip(failures) {
                    if failure.is_some() {
                        let p = &mut topics[*ti].1[*pi];
                        *p = ProducePartitionResponse::error(
                            p.index,
                            ErrorCode::KAFKA_STORAGE_ERROR,
                        );
                    }
                }
                let mut out = Vec::new();
                render(&topics, &mut out);
                out
            }),
        );
        Control::Continue
    }

    /// Validates and appends one partition's records. Returns the ticket
    /// and whether it is still pending.
    fn produce_partition(
        &mut self,
        ctx: &mut Ctx<'_>,
        topic: TopicId,
        index: i32,
        records: Option<&[u8]>,
    ) -> Result<(Ticket, bool), ErrorCode> {
        if index < 0 || index as u32 >= ctx.broker.partition_count(topic) {
            return Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
        }
        let records = records.ok_or(ErrorCode::INVALID_RECORD)?;
        // v3+: exactly one batch per partition.
        let mut batches = Batches::new(records);
        let one = match batches.next() {
            Some(Ok((_, bytes))) => bytes,
            Some(Err(e)) => return Err(e.error_code()),
            None => return Err(ErrorCode::INVALID_RECORD),
        };
        if batches.next().is_some() {
            return Err(ErrorCode::INVALID_RECORD);
        }
        let header = batch::validate(one).map_err(|e| e.error_code())?;
        if header.is_transactional() || header.is_control() {
            // No transactions here.
            return Err(ErrorCode::INVALID_RECORD);
        }
        let p = PartitionId {
            topic,
            partition: index as u32,
        };
        match ctx.broker.append_batch(p, one, &header, ctx.conn) {
            Ok(a) => Ok((a.ticket, a.pending)),
            Err(BatchRefusal::TooLarge) => Err(ErrorCode::MESSAGE_TOO_LARGE),
            Err(BatchRefusal::Invalid(why)) => {
                debug!("peer={} produce refused: {why}", ctx.peer);
                Err(ErrorCode::INVALID_RECORD)
            }
            Err(BatchRefusal::OutOfOrder) => Err(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER),
            Err(BatchRefusal::StaleEpoch) => Err(ErrorCode::INVALID_PRODUCER_EPOCH),
            Err(BatchRefusal::StillPending) => Err(ErrorCode::REQUEST_TIMED_OUT),
            Err(BatchRefusal::Deleted) => Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
            Err(BatchRefusal::Storage(_)) => Err(ErrorCode::KAFKA_STORAGE_ERROR),
        }
    }

    fn fetch(
        &mut self,
        ctx: &mut Ctx<'_>,
        header: &RequestHeader<'_>,
        r: &FetchRequest<'_>,
    ) -> Control {
        if header.api_version >= 7 && r.session_id != 0 {
            // We never open fetch sessions, so an incremental one is unknown.
            let resp = FetchResponse {
                throttle_time_ms: 0,
                error_code: ErrorCode::FETCH_SESSION_ID_NOT_FOUND,
                session_id: 0,
                responses: Vec::new(),
            };
            header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
            return Control::Continue;
        }
        let parked = ParkedFetch {
            correlation_id: header.correlation_id,
            version: header.api_version,
            header_version: header.response_header_version(),
            min_bytes: r.min_bytes.max(0) as usize,
            max_bytes: r.max_bytes.max(0) as usize,
            deadline: Instant::now() + Duration::from_millis(r.max_wait_ms.max(0) as u64),
            topics: r
                .topics
                .iter()
                .map(|t| {
                    (
                        t.topic.to_string(),
                        t.partitions
                            .iter()
                            .map(|p| {
                                (
                                    p.partition,
                                    p.fetch_offset,
                                    p.partition_max_bytes.max(0) as usize,
                                )
                            })
                            .collect(),
                    )
                })
                .collect(),
        };
        self.answer_or_park(ctx, parked, false)
    }

    /// Answers a fetch if it has enough data (or `force`), else parks it
    /// until data arrives or its deadline.
    fn answer_or_park(&mut self, ctx: &mut Ctx<'_>, f: ParkedFetch, force: bool) -> Control {
        let mut data = Vec::new();
        // The response stays within what is left of --max-output-bytes for
        // this connection, whatever the client allows (librdkafka asks for
        // up to 50 MiB); the first batch is always sent.
        let max_bytes = f
            .max_bytes
            .min(ctx.max_output.saturating_sub(ctx.out.pending()));
        // (topic, [(partition, error, hw, log start, records range)])
        let mut results: Vec<(String, Vec<FetchedPartition>)> = Vec::new();
        let mut waits = Vec::new();
        for (name, parts) in &f.topics {
            let topic = ctx.broker.lookup(name.as_bytes());
            let mut rs = Vec::new();
            for &(index, offset, partition_max) in parts {
                let Some(topic) =
                    topic.filter(|t| index >= 0 && (index as u32) < ctx.broker.partition_count(*t))
                else {
                    rs.push((index, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, -1, -1, 0..0));
                    continue;
                };
                let p = PartitionId {
                    topic,
                    partition: index as u32,
                };
                let hw = ctx.broker.visible_end(p);
                let start = ctx.broker.first_offset(p);
                let out_of_range = offset < 0 || (offset as u64) < start || offset as u64 > hw;
                if out_of_range {
                    rs.push((
                        index,
                        ErrorCode::OFFSET_OUT_OF_RANGE,
                        hw as i64,
                        start as i64,
                        0..0,
                    ));
                    continue;
                }
                let offset = offset as u64;
                let before = data.len();
                let room = max_bytes.saturating_sub(before);
                if offset < hw && (room > 0 || before == 0) {
                    let limit = partition_max.min(room.max(1));
                    match ctx.broker.read_batches(p, offset, limit, &mut data) {
                        Ok(_) => {}
                        Err(ReadError::OutOfRange { first }) => {
                            rs.push((
                                index,
                                ErrorCode::OFFSET_OUT_OF_RANGE,
                                hw as i64,
                                first as i64,
                                0..0,
                            ));
                            continue;
                        }
                        Err(ReadError::Deleted) => {
                            rs.push((index, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, -1, -1, 0..0));
                            continue;
                        }
                        Err(ReadError::Storage(_)) => {
                            data.truncate(before);
                            rs.push((
                                index,
                                ErrorCode::KAFKA_STORAGE_ERROR,
                                hw as i64,
                                start as i64,
                                0..0,
                            ));
                            continue;
                        }
                    }
                }
                if data.len() == before {
                    waits.push((p, offset));
                }
                rs.push((
                    index,
                    ErrorCode::NONE,
                    hw as i64,
                    start as i64,
                    before..data.len(),
                ));
            }
            results.push((name.clone(), rs));
        }
        let now = Instant::now();
        if !force && data.len() < f.min_bytes.max(1) && now < f.deadline && !waits.is_empty() {
            ctx.broker.wait(ctx.conn, &waits, Some(f.deadline));
            if self.parked.is_none() {
                ctx.broker.stats.parked_fetches += 1;
            }
            self.parked = Some(f);
            return Control::Park;
        }
        if self.parked.take().is_some() {
            ctx.broker.stats.parked_fetches -= 1;
        }
        let resp = FetchResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::NONE,
            session_id: 0,
            responses: results
                .iter()
                .map(|(name, rs)| FetchTopicResponse {
                    topic: name,
                    partitions: rs
                        .iter()
                        .map(|(index, code, hw, start, range)| FetchPartitionResponse {
                            partition_index: *index,
                            error_code: *code,
                            high_watermark: *hw,
                            last_stable_offset: *hw,
                            log_start_offset: *start,
                            aborted_transactions: None,
                            preferred_read_replica: -1,
                            records: Some(&data[range.clone()]),
                        })
                        .collect(),
                })
                .collect(),
        };
        encode_response(ctx.out.buf_mut(), f.correlation_id, f.header_version, |w| {
            resp.encode(f.version, w)
        });
        Control::Continue
    }

    fn find_coordinator(
        &mut self,
        ctx: &mut Ctx<'_>,
        header: &RequestHeader<'_>,
        r: &FindCoordinatorRequest<'_>,
    ) {
        let ok = r.key_type == KEY_TYPE_GROUP;
        let resp = FindCoordinatorResponse {
            throttle_time_ms: 0,
            error_code: if ok {
                ErrorCode::NONE
            } else {
                ErrorCode::COORDINATOR_NOT_AVAILABLE
            },
            error_message: (!ok).then_some("transactions are not supported"),
            node_id: if ok { NODE_ID } else { -1 },
            host: if ok { &self.advertised.host } else { "" },
            port: if ok { self.advertised.port } else { -1 },
        };
        header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
    }
}

/// A topic for a Kafka request naming it: looked up, or auto-created as a
/// batch topic when allowed.
fn topic_for(ctx: &mut Ctx<'_>, name: &str, allow_create: bool) -> Result<TopicId, ErrorCode> {
    if !is_valid_name(name.as_bytes()) {
        return Err(ErrorCode::INVALID_TOPIC_EXCEPTION);
    }
    let create = allow_create && ctx.broker.auto_create();
    match ctx.broker.topic(name.as_bytes(), create, Format::Batch) {
        Ok(id) => Ok(id),
        Err(TopicError::Unknown) => Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        Err(TopicError::TooMany { .. }) => Err(ErrorCode::POLICY_VIOLATION),
        Err(_) => Err(ErrorCode::KAFKA_STORAGE_ERROR),
    }
}

fn list_offsets(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &ListOffsetsRequest<'_>) {
    let mut topics = Vec::new();
    for t in &r.topics {
        let topic = ctx.broker.lookup(t.name.as_bytes());
        let mut parts = Vec::new();
        for p in &t.partitions {
            let resp = |error_code, offset: i64, timestamp| ListOffsetsPartitionResponse {
                partition_index: p.partition_index,
                error_code,
                timestamp,
                offset,
                leader_epoch: 0,
            };
            let Some(topic) = topic.filter(|t| {
                p.partition_index >= 0
                    && (p.partition_index as u32) < ctx.broker.partition_count(*t)
            }) else {
                parts.push(resp(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, -1, -1));
                continue;
            };
            let id = PartitionId {
                topic,
                partition: p.partition_index as u32,
            };
            parts.push(match p.timestamp {
                LATEST_TIMESTAMP => resp(ErrorCode::NONE, ctx.broker.visible_end(id) as i64, -1),
                EARLIEST_TIMESTAMP => resp(ErrorCode::NONE, ctx.broker.first_offset(id) as i64, -1),
                ts => match ctx.broker.offset_for_time(id, ts) {
                    Ok(Some((offset, found))) => resp(ErrorCode::NONE, offset as i64, found),
                    Ok(None) => resp(ErrorCode::NONE, -1, -1),
                    Err(_) => resp(ErrorCode::KAFKA_STORAGE_ERROR, -1, -1),
                },
            });
        }
        topics.push(ListOffsetsTopicResponse {
            name: t.name,
            partitions: parts,
        });
    }
    let resp = ListOffsetsResponse {
        throttle_time_ms: 0,
        topics,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

fn init_producer_id(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &InitProducerIdRequest<'_>) {
    let resp = if r.transactional_id.is_some() {
        InitProducerIdResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            producer_id: -1,
            producer_epoch: -1,
        }
    } else {
        match ctx.broker.new_producer_id() {
            Some(producer_id) => InitProducerIdResponse {
                throttle_time_ms: 0,
                error_code: ErrorCode::NONE,
                producer_id,
                producer_epoch: 0,
            },
            // Retriable: the client tries again, maybe once space returns.
            None => InitProducerIdResponse {
                throttle_time_ms: 0,
                error_code: ErrorCode::COORDINATOR_NOT_AVAILABLE,
                producer_id: -1,
                producer_epoch: -1,
            },
        }
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

fn create_topics(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &CreateTopicsRequest<'_>) {
    let mut results = Vec::new();
    for t in &r.topics {
        let name = t.name.as_bytes();
        let (code, message) = if !is_valid_name(name) {
            (
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                Some("names are 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            )
        } else if t.replication_factor != -1 && t.replication_factor != 1 {
            (
                ErrorCode::INVALID_REPLICATION_FACTOR,
                Some("this broker is one node: replication factor 1"),
            )
        } else if ctx.broker.lookup(name).is_some() {
            (ErrorCode::TOPIC_ALREADY_EXISTS, None)
        } else {
            let partitions = if !t.assignments.is_empty() {
                Some(t.assignments.len() as i64)
            } else if t.num_partitions == -1 {
                None
            } else {
                Some(i64::from(t.num_partitions))
            };
            match partitions {
                Some(n) if !(1..=1024).contains(&n) => (
                    ErrorCode::INVALID_PARTITIONS,
                    Some("partitions must be from 1 to 1024"),
                ),
                _ if r.validate_only => (ErrorCode::NONE, None),
                n => match ctx
                    .broker
                    .create_topic(name, n.map(|n| n as u32), Format::Batch)
                {
                    Ok(_) => (ErrorCode::NONE, None),
                    Err(TopicError::Exists) => (ErrorCode::TOPIC_ALREADY_EXISTS, None),
                    Err(TopicError::TooMany { .. }) => (
                        ErrorCode::POLICY_VIOLATION,
                        Some("the broker holds its limit of topics (--max-topics)"),
                    ),
                    Err(_) => (ErrorCode::KAFKA_STORAGE_ERROR, None),
                },
            }
        };
        results.push(CreatableTopicResult {
            name: t.name,
            error_code: code,
            error_message: message,
        });
    }
    let resp = CreateTopicsResponse {
        throttle_time_ms: 0,
        topics: results,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

fn offset_commit(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &OffsetCommitRequest<'_>) {
    let group_error = groups::check_commit(ctx, r.group_id, r.generation_id, r.member_id);
    let mut topics: Vec<(String, Vec<OffsetCommitPartitionResponse>)> = Vec::new();
    let mut pending: Vec<(Ticket, usize, usize)> = Vec::new();
    for (ti, t) in r.topics.iter().enumerate() {
        let topic = ctx.broker.lookup(t.name.as_bytes());
        let mut parts = Vec::new();
        for (pi, p) in t.partitions.iter().enumerate() {
            let code = if let Some(code) = group_error {
                code
            } else if !is_valid_name(r.group_id.as_bytes()) {
                ErrorCode::INVALID_GROUP_ID
            } else {
                match topic.filter(|t| {
                    p.partition_index >= 0
                        && (p.partition_index as u32) < ctx.broker.partition_count(*t)
                }) {
                    None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(topic) => {
                        let id = PartitionId {
                            topic,
                            partition: p.partition_index as u32,
                        };
                        match ctx.broker.commit(
                            id,
                            r.group_id.as_bytes(),
                            p.committed_offset.max(0) as u64,
                            ctx.conn,
                        ) {
                            Ok(ticket) => {
                                pending.push((ticket, ti, pi));
                                ErrorCode::NONE
                            }
                            Err(CommitError::PastEnd { .. }) => ErrorCode::OFFSET_OUT_OF_RANGE,
                            Err(CommitError::TooManyGroups { .. }) => {
                                ErrorCode::COORDINATOR_NOT_AVAILABLE
                            }
                            Err(CommitError::Deleted) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                            Err(CommitError::Storage(_)) => ErrorCode::KAFKA_STORAGE_ERROR,
                        }
                    }
                }
            };
            parts.push(OffsetCommitPartitionResponse {
                partition_index: p.partition_index,
                error_code: code,
            });
        }
        topics.push((t.name.to_string(), parts));
    }
    let (correlation_id, version, header_version) = (
        header.correlation_id,
        header.api_version,
        header.response_header_version(),
    );
    let render = move |topics: &[(String, Vec<OffsetCommitPartitionResponse>)],
                       out: &mut Vec<u8>| {
        let resp = OffsetCommitResponse {
            throttle_time_ms: 0,
            topics: topics
                .iter()
                .map(|(name, parts)| OffsetCommitTopicResponse {
                    name,
                    partitions: parts.clone(),
                })
                .collect(),
        };
        encode_response(out, correlation_id, header_version, |w| {
            resp.encode(version, w)
        });
    };
    let tickets: Vec<Ticket> = pending.iter().map(|(t, _, _)| *t).collect();
    let mut first = Vec::new();
    render(&topics, &mut first);
    ctx.out.push_pending(
        &tickets,
        |buf| buf.extend_from_slice(&first),
        Box::new(move |failures: &[Option<Rc<WriteError>>]| {
            let mut topics = topics;
            for ((_, ti, pi), failure) in pending.iter().zip(failures) {
                if failure.is_some() {
                    topics[*ti].1[*pi].error_code = ErrorCode::KAFKA_STORAGE_ERROR;
                }
            }
            let mut out = Vec::new();
            render(&topics, &mut out);
            out
        }),
    );
}

fn offset_fetch(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &OffsetFetchRequest<'_>) {
    let group = r.group_id.as_bytes();
    let mut topics = Vec::new();
    let partition_of = |ctx: &Ctx<'_>, topic: Option<TopicId>, index: i32| {
        topic.filter(|t| index >= 0 && (index as u32) < ctx.broker.partition_count(*t))
    };
    match &r.topics {
        Some(list) => {
            for t in list {
                let topic = ctx.broker.lookup(t.name.as_bytes());
                let parts = t
                    .partition_indexes
                    .iter()
                    .map(|&i| match partition_of(ctx, topic, i) {
                        None => OffsetFetchPartition {
                            partition_index: i,
                            committed_offset: -1,
                            committed_leader_epoch: -1,
                            metadata: Some(""),
                            error_code: ErrorCode::NONE,
                        },
                        Some(topic) => OffsetFetchPartition {
                            partition_index: i,
                            committed_offset: ctx
                                .broker
                                .committed(
                                    PartitionId {
                                        topic,
                                        partition: i as u32,
                                    },
                                    group,
                                )
                                .map_or(-1, |o| o as i64),
                            committed_leader_epoch: -1,
                            metadata: Some(""),
                            error_code: ErrorCode::NONE,
                        },
                    })
                    .collect();
                topics.push(OffsetFetchTopicResponse {
                    name: t.name,
                    partitions: parts,
                });
            }
        }
        None => {
            // Every partition the group committed for (v2+: null topics).
            let entries = ctx.broker.committed_by_group(group);
            let names: Vec<String> = entries.iter().map(|(t, _, _)| t.clone()).collect();
            let mut by_topic: Vec<(String, Vec<OffsetFetchPartition<'_>>)> = Vec::new();
            for (name, (_, p, o)) in names.iter().zip(&entries) {
                let part = OffsetFetchPartition {
                    partition_index: *p as i32,
                    committed_offset: *o as i64,
                    committed_leader_epoch: -1,
                    metadata: Some(""),
                    error_code: ErrorCode::NONE,
                };
                match by_topic.iter_mut().find(|(n, _)| n == name) {
                    Some((_, parts)) => parts.push(part),
                    None => by_topic.push((name.clone(), vec![part])),
                }
            }
            let resp_topics: Vec<OffsetFetchTopicResponse<'_>> = by_topic
                .iter()
                .map(|(name, parts)| OffsetFetchTopicResponse {
                    name,
                    partitions: parts.clone(),
                })
                .collect();
            let resp = OffsetFetchResponse {
                throttle_time_ms: 0,
                topics: resp_topics,
                error_code: ErrorCode::NONE,
            };
            header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
            return;
        }
    }
    let resp = OffsetFetchResponse {
        throttle_time_ms: 0,
        topics,
        error_code: ErrorCode::NONE,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}

fn describe_configs(ctx: &mut Ctx<'_>, header: &RequestHeader<'_>, r: &DescribeConfigsRequest<'_>) {
    let results = r
        .resources
        .iter()
        .map(|res| {
            let known = match res.resource_type {
                RESOURCE_TOPIC => ctx.broker.lookup(res.resource_name.as_bytes()).is_some(),
                RESOURCE_BROKER => true,
                _ => false,
            };
            DescribeConfigsResult {
                error_code: if known {
                    ErrorCode::NONE
                } else if res.resource_type == RESOURCE_TOPIC {
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    ErrorCode::INVALID_REQUEST
                },
                error_message: None,
                resource_type: res.resource_type,
                resource_name: res.resource_name,
                configs: Vec::new(),
            }
        })
        .collect();
    let resp = DescribeConfigsResponse {
        throttle_time_ms: 0,
        results,
    };
    header.respond(ctx.out.buf_mut(), |w, v| resp.encode(v, w));
}
