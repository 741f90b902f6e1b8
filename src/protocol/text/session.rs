//! One text connection's session: what its requests do, in terms of the
//! broker's API, and the reply lines they render.

use std::io::Write;
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::decoder::{Frame, LineDecoder};
use super::reply;
use super::request::{Request, parse};
use crate::broker::groups::{GroupError, GroupEvent};
use crate::broker::{
    CommitError, DEFAULT_TOPIC, PartitionId, ReadError, Ticket, TopicError, TopicId, Wake,
};
use crate::config;
use crate::protocol::{Control, Ctx};
use crate::storage::Format;
use crate::util::push_u64;

/// `INVALID_TOKEN` replies before the connection is closed.
const MAX_AUTH_FAILURES: u8 = 3;

/// A `FETCH` parked until data arrives or its wait ends.
#[derive(Debug, Clone, Copy)]
struct Parked {
    p: PartitionId,
    offset: u64,
    max: u64,
}

/// A `SUBSCRIBE` stream: messages from `next` on are sent as the socket
/// drains, read from the log, never buffered beyond a window.
#[derive(Debug, Clone, Copy)]
struct Subscription {
    p: PartitionId,
    next: u64,
    /// Registered with the broker to hear of new messages.
    waiting: bool,
}

/// One text connection: its line decoder and its state.
#[derive(Debug)]
pub struct TextSession {
    decoder: LineDecoder,
    state: State,
}

/// What a text client has asked for beyond single requests.
#[derive(Debug)]
struct State {
    /// The topic and partition its commands apply to (`USE`).
    topic: TopicId,
    partition: u32,
    authenticated: bool,
    auth_failures: u8,
    /// A parked `FETCH`; the client's later requests are not read
    /// meanwhile, so replies stay in order.
    parked: Option<Parked>,
    subscription: Option<Subscription>,
    /// Groups joined on this connection: (group, member id).
    memberships: Vec<(String, String)>,
    /// The client closed its sending side: nothing waits for it any more.
    input_closed: bool,
    /// A request that reads stored state, received while earlier replies
    /// of this connection waited for their writes: it runs once they are
    /// settled (read-your-writes within a connection).
    deferred: Option<Vec<u8>>,
}

impl TextSession {
    pub fn new(max_line_bytes: usize, authenticated: bool, default_topic: TopicId) -> Self {
        TextSession {
            decoder: LineDecoder::new(max_line_bytes),
            state: State {
                topic: default_topic,
                partition: 0,
                authenticated,
                auth_failures: 0,
                parked: None,
                subscription: None,
                memberships: Vec::new(),
                input_closed: false,
                deferred: None,
            },
        }
    }

    /// Bytes held for an unfinished line.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Whether the session waits by design (a parked fetch, a stream), so
    /// a half-closed connection stays open for it.
    pub fn is_waiting(&self) -> bool {
        self.state.parked.is_some()
            || self.state.subscription.is_some()
            || self.state.deferred.is_some()
    }

    /// Whether a subscription has more to send (it is not waiting for
    /// new messages).
    pub fn is_streaming(&self) -> bool {
        self.state.subscription.is_some_and(|s| !s.waiting)
    }

    pub fn is_parked(&self) -> bool {
        self.state.parked.is_some() || self.state.deferred.is_some()
    }

    /// Runs a request that was deferred (until the connection's earlier
    /// replies were settled, or to the next turn); it may defer again.
    /// `None` if there was none.
    pub fn run_deferred(&mut self, ctx: &mut Ctx<'_>) -> Option<Control> {
        let line = self.state.deferred.take()?;
        Some(self.state.execute(ctx, &line))
    }

    /// Whether part of a request line has been read.
    pub fn in_request(&self) -> bool {
        self.decoder.buffered() > 0 || self.decoder.is_discarding()
    }

    /// The client closed its sending side: see [`Session::input_closed`].
    pub fn input_closed(&mut self, ctx: &mut Ctx<'_>) -> bool {
        self.state.input_closed(ctx)
    }

    /// Decodes and executes the requests in `input`. Returns how many bytes
    /// it used and why it stopped: fewer than all when the output is over
    /// `ctx.max_output` (`Control::Pause`) or a request parked
    /// (`Control::Park`); all of them when the client quit (the rest is
    /// dropped).
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
                Some(Frame::Line(line)) => self.state.execute(ctx, line),
                Some(Frame::TooLong) => {
                    debug!("peer={} request line too long", ctx.peer);
                    let buf = ctx.out.buf_mut();
                    buf.extend_from_slice(reply::MESSAGE_TOO_LARGE);
                    push_u64(buf, self.decoder.max() as u64);
                    buf.push(b'\n');
                    Control::Continue
                }
                Some(Frame::Interrupt) => {
                    // Ctrl-C in telnet: the partial line is gone; a
                    // subscription ends as with UNSUBSCRIBE.
                    debug!("peer={} telnet interrupt", ctx.peer);
                    if let Some(next) = self.state.end_subscription(ctx) {
                        end_offset(ctx, next);
                    }
                    Control::Continue
                }
                Some(Frame::Reply(bytes)) => {
                    ctx.out.buf_mut().extend_from_slice(&bytes);
                    Control::Continue
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

    /// The connection's wait ended: completes a parked `FETCH` (returns
    /// true: its later requests can be read again), or lets a subscription
    /// be refilled.
    pub fn on_wake(&mut self, ctx: &mut Ctx<'_>, wake: Wake) -> bool {
        self.state.on_wake(ctx, wake)
    }

    /// Tops up a subscriber's output (see [`State::refill`]).
    pub fn refill(&mut self, ctx: &mut Ctx<'_>, window: usize) -> bool {
        self.state.refill(ctx, window)
    }

    /// The connection is closing: drop what it waits for.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        self.state.close(ctx);
    }
}

impl State {
    /// Executes one request line.
    fn execute(&mut self, ctx: &mut Ctx<'_>, line: &[u8]) -> Control {
        let request = match parse(line) {
            Ok(request) => request,
            Err(err) => {
                let _ = writeln!(ctx.out.buf_mut(), "{err}");
                return Control::Continue;
            }
        };
        if !self.authenticated
            && !matches!(
                request,
                Request::Auth(_) | Request::Ping | Request::Help | Request::Quit
            )
        {
            ctx.out.push(reply::NOAUTH);
            return Control::Continue;
        }
        if request.reads_stored_state() && ctx.out.has_pending_replies() {
            // Earlier writes of this connection are not settled yet: run
            // this once they are, so it sees them.
            self.deferred = Some(line.to_vec());
            return Control::Park;
        }
        if request.reads_much() && ctx.broker.over_read_budget() {
            // This turn has read its share: next turn, after the others.
            self.deferred = Some(line.to_vec());
            return Control::Yield;
        }
        let p = PartitionId {
            topic: self.topic,
            partition: self.partition,
        };
        match request {
            Request::Produce(message) => match ctx.broker.append(p, message, ctx.conn) {
                Ok(ticket) => push_ack(ctx, ticket),
                Err(_) if !ctx.broker.live(p) => deleted(ctx, self.topic),
                Err(e) => storage_error(ctx, &e.reason),
            },
            Request::Consume(offset) => {
                match ctx.broker.read(p, offset, 1, usize::MAX, |o, m| {
                    push_message(ctx.out.buf_mut(), o, m);
                    true
                }) {
                    Ok(next) if next == offset => ctx.out.push(reply::NO_MESSAGE),
                    Ok(_) => {}
                    Err(e) => read_error(ctx, &e),
                }
            }
            Request::Fetch {
                offset,
                max,
                wait_ms,
            } => {
                if self.subscription.is_some() {
                    return invalid(ctx, "not while subscribed; send UNSUBSCRIBE first");
                }
                ctx.broker.flush_if_staged(p, offset);
                let first = ctx.broker.first_offset(p);
                if offset < first {
                    read_error(ctx, &ReadError::OutOfRange { first });
                    return Control::Continue;
                }
                let available = offset < ctx.broker.visible_end(p);
                match wait_ms {
                    // Nothing waits for a client that closed its side.
                    Some(ms) if ms > 0 && !available && !self.input_closed => {
                        let deadline = Instant::now() + Duration::from_millis(ms);
                        self.parked = Some(Parked { p, offset, max });
                        ctx.broker.stats.parked_fetches += 1;
                        ctx.broker.wait(ctx.conn, &[(p, offset)], Some(deadline));
                        return Control::Park;
                    }
                    _ => answer_fetch(ctx, p, offset, max),
                }
            }
            Request::Subscribe(offset) => {
                if self.subscription.is_some() {
                    return invalid(ctx, "already subscribed; send UNSUBSCRIBE first");
                }
                let first = ctx.broker.first_offset(p);
                if offset < first {
                    read_error(ctx, &ReadError::OutOfRange { first });
                    return Control::Continue;
                }
                ctx.broker.flush_if_staged(p, offset);
                self.subscription = Some(Subscription {
                    p,
                    next: offset,
                    waiting: false,
                });
                ctx.broker.stats.subscribers += 1;
                // Start the stream now so it comes before the replies to
                // later requests; the rest follows as the socket drains.
                self.refill(ctx, config::SUBSCRIPTION_WINDOW);
            }
            Request::Unsubscribe => match self.end_subscription(ctx) {
                Some(next) => end_offset(ctx, next),
                None => return invalid(ctx, "not subscribed"),
            },
            Request::Use(name, partition) => match ctx.broker.use_topic(name) {
                Ok(id) => {
                    let count = ctx.broker.partition_count(id);
                    if partition >= count {
                        let _ = writeln!(
                            ctx.out.buf_mut(),
                            "{} topic {} has {count} partition{} (0 to {})",
                            reply::INVALID_REQUEST,
                            String::from_utf8_lossy(name),
                            if count == 1 { "" } else { "s" },
                            count - 1
                        );
                        return Control::Continue;
                    }
                    self.topic = id;
                    self.partition = partition;
                    let buf = ctx.out.buf_mut();
                    buf.extend_from_slice(reply::USING);
                    buf.extend_from_slice(name);
                    if partition > 0 {
                        buf.push(b'/');
                        push_u64(buf, u64::from(partition));
                    }
                    buf.push(b'\n');
                }
                Err(e) => topic_error(ctx, name, &e),
            },
            Request::Create(name, partitions) => {
                match ctx.broker.create_topic(name, partitions, Format::Text) {
                    Ok(_) => reply_name(ctx, reply::CREATED, name),
                    Err(TopicError::Exists) => reply_name(ctx, reply::TOPIC_EXISTS, name),
                    Err(e) => topic_error(ctx, name, &e),
                }
            }
            Request::Topics => list_topics(ctx),
            Request::Delete(name) => match ctx.broker.delete_topic(name) {
                Ok(()) => reply_name(ctx, reply::DELETED, name),
                Err(TopicError::Invalid) => {
                    return invalid(ctx, "the default topic cannot be deleted");
                }
                Err(TopicError::Unknown) => {
                    let buf = ctx.out.buf_mut();
                    buf.extend_from_slice(reply::UNKNOWN_TOPIC);
                    buf.extend_from_slice(name);
                    buf.extend_from_slice(b" does not exist\n");
                }
                Err(e) => topic_error(ctx, name, &e),
            },
            Request::Join(group, session_ms) => {
                let group = String::from_utf8_lossy(group).into_owned();
                if self.memberships.iter().any(|(g, _)| *g == group) {
                    return invalid(
                        ctx,
                        "already in this group on this connection; LEAVE it first",
                    );
                }
                let session = Duration::from_millis(
                    session_ms.unwrap_or(crate::broker::groups::DEFAULT_TEXT_SESSION_MS),
                );
                match ctx
                    .broker
                    .join_text_group(&group, self.topic, session, ctx.conn)
                {
                    Ok(member) => {
                        let _ = writeln!(
                            ctx.out.buf_mut(),
                            "{}{group} member:{member} session_ms:{}",
                            String::from_utf8_lossy(reply::JOINED),
                            session.as_millis()
                        );
                        self.memberships.push((group, member));
                    }
                    Err(e) => group_error(ctx, &group, e),
                }
            }
            Request::Heartbeat(group, acked) => {
                let group = String::from_utf8_lossy(group).into_owned();
                let Some((_, member)) = self.memberships.iter().find(|(g, _)| *g == group) else {
                    return invalid(ctx, "not in this group on this connection; JOIN it first");
                };
                match ctx.broker.heartbeat_text_group(&group, member, acked) {
                    Ok((generation, partitions)) => push_assignment(
                        ctx.out.buf_mut(),
                        reply::ALIVE,
                        &group,
                        generation,
                        &partitions,
                    ),
                    Err(e) => {
                        self.memberships.retain(|(g, _)| *g != group);
                        group_error(ctx, &group, e);
                    }
                }
            }
            Request::Leave(group) => {
                let group = String::from_utf8_lossy(group).into_owned();
                let Some(i) = self.memberships.iter().position(|(g, _)| *g == group) else {
                    return invalid(ctx, "not in this group on this connection");
                };
                let (_, member) = self.memberships.remove(i);
                let _ = ctx.broker.leave_group(&group, &[&member]);
                reply_name(ctx, reply::LEFT, group.as_bytes());
            }
            Request::Commit { group, offset } => {
                match ctx.broker.commit(p, group, offset, ctx.conn) {
                    Ok(ticket) => ctx.out.push_line_pending(ticket, |buf| {
                        buf.extend_from_slice(reply::COMMITTED);
                        buf.extend_from_slice(group);
                        buf.push(b' ');
                        push_u64(buf, offset);
                        buf.push(b'\n');
                    }),
                    Err(CommitError::PastEnd { end }) => {
                        let name =
                            String::from_utf8_lossy(ctx.broker.topic_name(self.topic)).into_owned();
                        let _ = writeln!(
                            ctx.out.buf_mut(),
                            "{} offset {offset} is past the end of topic {name} (next offset {end})",
                            reply::INVALID_OFFSET,
                        );
                    }
                    Err(CommitError::Storage(e)) => storage_error(ctx, &e.reason),
                    Err(CommitError::TooManyGroups { limit }) => {
                        let buf = ctx.out.buf_mut();
                        buf.extend_from_slice(reply::TOO_MANY_GROUPS);
                        let _ = writeln!(
                            buf,
                            "the broker holds its limit of {limit} groups (--max-groups)"
                        );
                    }
                    Err(CommitError::Deleted) => deleted(ctx, self.topic),
                }
            }
            Request::Offset(group) => {
                let offset = ctx.broker.committed(p, group).unwrap_or(0);
                let buf = ctx.out.buf_mut();
                buf.extend_from_slice(reply::OFFSET);
                buf.extend_from_slice(group);
                buf.push(b' ');
                push_u64(buf, offset);
                buf.push(b'\n');
            }
            Request::Stats => stats_reply(ctx),
            Request::Auth(token) => {
                if !ctx.broker.auth_required() {
                    return invalid(ctx, "authentication is not enabled on this broker");
                }
                if ctx.broker.check_token(token) {
                    self.authenticated = true;
                    self.auth_failures = 0;
                    ctx.out.push(reply::AUTHENTICATED);
                } else {
                    self.auth_failures += 1;
                    warn!(
                        "peer={} wrong AUTH token (failure {})",
                        ctx.peer, self.auth_failures
                    );
                    if self.auth_failures >= MAX_AUTH_FAILURES {
                        ctx.out.push(reply::INVALID_TOKEN_CLOSING);
                        return Control::Quit;
                    }
                    ctx.out.push(reply::INVALID_TOKEN);
                }
            }
            Request::Ping => ctx.out.push(reply::PONG),
            Request::Help => ctx.out.push(reply::HELP),
            Request::Quit => {
                // BYE is the last line: the stream stops here.
                self.end_subscription(ctx);
                ctx.out.push(reply::BYE);
                return Control::Quit;
            }
        }
        Control::Continue
    }

    fn input_closed(&mut self, ctx: &mut Ctx<'_>) -> bool {
        self.input_closed = true;
        if self.deferred.is_some() {
            // It runs when the writes before it settle, in order.
            return false;
        }
        if let Some(parked) = self.parked.take() {
            ctx.broker.cancel_wait(ctx.conn);
            ctx.broker.stats.parked_fetches -= 1;
            answer_fetch(ctx, parked.p, parked.offset, parked.max);
            return true;
        }
        if self.subscription.is_some_and(|s| s.waiting)
            && let Some(next) = self.end_subscription(ctx)
        {
            end_offset(ctx, next);
        }
        false
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>, wake: Wake) -> bool {
        if wake == Wake::Group {
            // A group's assignment changed: tell the client, between
            // replies (it comes unasked, like a stream's messages).
            for event in ctx.broker.take_group_events(ctx.conn) {
                if let GroupEvent::Assigned {
                    group,
                    generation,
                    partitions,
                } = event
                {
                    push_assignment(
                        ctx.out.buf_mut(),
                        reply::ASSIGNED,
                        &group,
                        generation,
                        &partitions,
                    );
                }
            }
            return false;
        }
        if let Some(parked) = self.parked.take() {
            ctx.broker.stats.parked_fetches -= 1;
            answer_fetch(ctx, parked.p, parked.offset, parked.max);
            return true;
        }
        if let Some(sub) = &mut self.subscription {
            sub.waiting = false;
        }
        false
    }

    /// Tops up a subscriber's output from the log, up to `window` bytes
    /// pending. Returns whether more messages are ready to send once the
    /// socket drains.
    fn refill(&mut self, ctx: &mut Ctx<'_>, window: usize) -> bool {
        let Some(mut sub) = self.subscription else {
            return false;
        };
        if sub.waiting {
            return false;
        }
        if !ctx.broker.live(sub.p) {
            // The topic was deleted: the stream ends with the reason.
            read_error(ctx, &ReadError::Deleted);
            self.subscription = Some(sub);
            self.end_subscription(ctx);
            return false;
        }
        while ctx.out.pending() < window && sub.next < ctx.broker.visible_end(sub.p) {
            let room = (window - ctx.out.pending()).min(ctx.max_output);
            let result = read_bounded(ctx, sub.p, sub.next, usize::MAX, room);
            match result {
                Ok(next) if next == sub.next => break,
                Ok(next) => sub.next = next,
                Err(e) => {
                    // End the stream with the error; the client can
                    // SUBSCRIBE again from the offset it reached.
                    read_error(ctx, &e);
                    self.subscription = Some(sub);
                    self.end_subscription(ctx);
                    return false;
                }
            }
        }
        let more = sub.next < ctx.broker.visible_end(sub.p);
        if !more && self.input_closed {
            // Caught up, and the client closed its side: the stream ends.
            self.subscription = Some(sub);
            if let Some(next) = self.end_subscription(ctx) {
                end_offset(ctx, next);
            }
            return false;
        }
        if !more {
            // Caught up: wait for the next message (whatever is still
            // queued; no writable edge may come to ask again).
            ctx.broker.wait(ctx.conn, &[(sub.p, sub.next)], None);
            sub.waiting = true;
        }
        self.subscription = Some(sub);
        more
    }

    /// Ends a subscription (if any); returns the offset it reached.
    fn end_subscription(&mut self, ctx: &mut Ctx<'_>) -> Option<u64> {
        let sub = self.subscription.take()?;
        ctx.broker.cancel_wait(ctx.conn);
        ctx.broker.stats.subscribers -= 1;
        Some(sub.next)
    }

    fn close(&mut self, ctx: &mut Ctx<'_>) {
        if self.parked.take().is_some() {
            ctx.broker.stats.parked_fetches -= 1;
        }
        self.end_subscription(ctx);
        // Leaves its groups at once, and forgets its waits.
        ctx.broker.connection_closed(ctx.conn);
    }
}

/// The text topic a new connection starts on.
pub fn default_topic(broker: &mut crate::broker::Broker) -> TopicId {
    broker
        .topic(DEFAULT_TOPIC, false, Format::Text)
        .expect("the default topic always exists")
}

fn push_ack(ctx: &mut Ctx<'_>, ticket: Ticket) {
    ctx.out.push_line_pending(ticket, |buf| {
        buf.extend_from_slice(reply::ACK);
        push_u64(buf, ticket.offset);
        buf.push(b'\n');
    });
}

/// A `MESSAGE` line; a message holding a newline or ending in a carriage
/// return (only Kafka record values can) goes as a `MESSAGE64` line with
/// its bytes in base64: a reader that strips `\r\n` would lose that `\r`.
fn push_message(buf: &mut Vec<u8>, offset: u64, message: &[u8]) {
    if memchr::memchr(b'\n', message).is_some() || message.last() == Some(&b'\r') {
        buf.extend_from_slice(reply::MESSAGE64);
        push_u64(buf, offset);
        buf.push(b' ');
        crate::util::push_base64(buf, message);
    } else {
        buf.extend_from_slice(reply::MESSAGE);
        push_u64(buf, offset);
        buf.push(b' ');
        buf.extend_from_slice(message);
    }
    buf.push(b'\n');
}

/// Renders up to `max` messages from `offset` as `MESSAGE` lines, at
/// most `room` bytes of lines (at least one line if there is a message).
/// Returns the offset after the last one rendered.
fn read_bounded(
    ctx: &mut Ctx<'_>,
    p: PartitionId,
    offset: u64,
    max: usize,
    room: usize,
) -> Result<u64, ReadError> {
    let start = ctx.out.buf_mut().len();
    let Ctx { broker, out, .. } = ctx;
    broker.read(p, offset, max, usize::MAX, |o, m| {
        let buf = out.buf_mut();
        let before = buf.len();
        push_message(buf, o, m);
        if before > start && buf.len() - start > room {
            // Over the bound: this line waits for the next reply.
            buf.truncate(before);
            return false;
        }
        true
    })
}

/// Answers a `FETCH` with what is there now: as many messages as fit in
/// what is left of `--max-output-bytes` for this connection (at least
/// one), so its queued output stays within the bound.
fn answer_fetch(ctx: &mut Ctx<'_>, p: PartitionId, offset: u64, max: u64) {
    let room = ctx.max_output.saturating_sub(ctx.out.pending());
    let result = read_bounded(ctx, p, offset, max as usize, room);
    match result {
        Ok(next) => end_offset(ctx, next),
        Err(e) => read_error(ctx, &e),
    }
}

/// `<word><group> generation:<g> partitions:<p>,<p>|none`: an `ASSIGNED`
/// notice, or the `ALIVE` reply to `HEARTBEAT`.
fn push_assignment(
    buf: &mut Vec<u8>,
    word: &[u8],
    group: &str,
    generation: i32,
    partitions: &[u32],
) {
    buf.extend_from_slice(word);
    buf.extend_from_slice(group.as_bytes());
    let _ = write!(buf, " generation:{generation} partitions:");
    if partitions.is_empty() {
        buf.extend_from_slice(b"none");
    }
    for (i, p) in partitions.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_u64(buf, u64::from(*p));
    }
    buf.push(b'\n');
}

fn group_error(ctx: &mut Ctx<'_>, group: &str, e: GroupError) {
    let text_topic = ctx
        .broker
        .text_group_topic(group)
        .map(|t| String::from_utf8_lossy(ctx.broker.topic_name(t)).into_owned());
    let max_groups = ctx.broker.max_groups();
    let buf = ctx.out.buf_mut();
    let _ = match e {
        GroupError::InconsistentProtocol => match text_topic {
            Some(topic) => writeln!(
                buf,
                "{}{group} shares topic {topic}; a text group reads one topic",
                String::from_utf8_lossy(reply::GROUP_PROTOCOL_MISMATCH)
            ),
            None => writeln!(
                buf,
                "{}{group} is used by Kafka clients; text clients cannot join it",
                String::from_utf8_lossy(reply::GROUP_PROTOCOL_MISMATCH)
            ),
        },
        GroupError::TooManyGroups => writeln!(
            buf,
            "{}the broker holds its limit of {max_groups} groups (--max-groups)",
            String::from_utf8_lossy(reply::TOO_MANY_GROUPS)
        ),
        GroupError::GroupFull => writeln!(
            buf,
            "{}{group} has {} members",
            String::from_utf8_lossy(reply::GROUP_FULL),
            crate::broker::groups::MAX_MEMBERS
        ),
        _ => writeln!(
            buf,
            "{}{group} no longer has this member (its session timed out); JOIN again",
            String::from_utf8_lossy(reply::UNKNOWN_MEMBER)
        ),
    };
}

fn deleted(ctx: &mut Ctx<'_>, topic: TopicId) {
    let name = String::from_utf8_lossy(ctx.broker.topic_name(topic)).into_owned();
    let buf = ctx.out.buf_mut();
    buf.extend_from_slice(reply::UNKNOWN_TOPIC);
    let _ = writeln!(buf, "{name} was deleted; USE another topic");
}

fn invalid(ctx: &mut Ctx<'_>, why: &str) -> Control {
    let _ = writeln!(ctx.out.buf_mut(), "{} {why}", reply::INVALID_REQUEST);
    Control::Continue
}

fn read_error(ctx: &mut Ctx<'_>, e: &ReadError) {
    let buf = ctx.out.buf_mut();
    match e {
        ReadError::Deleted => {
            buf.extend_from_slice(reply::UNKNOWN_TOPIC);
            buf.extend_from_slice(b"this topic was deleted; USE another\n");
        }
        ReadError::OutOfRange { first } => {
            buf.extend_from_slice(reply::OFFSET_OUT_OF_RANGE);
            push_u64(buf, *first);
            buf.push(b'\n');
        }
        ReadError::Storage(why) => {
            buf.extend_from_slice(reply::STORAGE_ERROR);
            buf.extend_from_slice(why.as_bytes());
            buf.push(b'\n');
        }
    }
}

fn storage_error(ctx: &mut Ctx<'_>, why: &str) {
    let buf = ctx.out.buf_mut();
    buf.extend_from_slice(reply::STORAGE_ERROR);
    buf.extend_from_slice(why.as_bytes());
    buf.push(b'\n');
}

fn topic_error(ctx: &mut Ctx<'_>, name: &[u8], e: &TopicError) {
    match e {
        TopicError::Unknown => {
            let buf = ctx.out.buf_mut();
            buf.extend_from_slice(reply::UNKNOWN_TOPIC);
            buf.extend_from_slice(name);
            buf.extend_from_slice(b" does not exist and auto-create is off; CREATE it first\n");
        }
        TopicError::Exists => reply_name(ctx, reply::TOPIC_EXISTS, name),
        TopicError::TooMany { limit } => {
            let buf = ctx.out.buf_mut();
            buf.extend_from_slice(reply::TOO_MANY_TOPICS);
            let _ = writeln!(
                buf,
                "the broker holds its limit of {limit} topics (--max-topics)"
            );
        }
        TopicError::Invalid => {
            let _ = writeln!(ctx.out.buf_mut(), "{} not allowed", reply::INVALID_REQUEST);
        }
        TopicError::InvalidPartitions { max } => {
            let _ = writeln!(
                ctx.out.buf_mut(),
                "{} partitions must be from 1 to {max}",
                reply::INVALID_REQUEST
            );
        }
        TopicError::Storage(why) => storage_error(ctx, why),
    }
}

fn reply_name(ctx: &mut Ctx<'_>, word: &[u8], name: &[u8]) {
    let buf = ctx.out.buf_mut();
    buf.extend_from_slice(word);
    buf.extend_from_slice(name);
    buf.push(b'\n');
}

fn end_offset(ctx: &mut Ctx<'_>, next: u64) {
    let buf = ctx.out.buf_mut();
    buf.extend_from_slice(reply::END_OFFSET);
    push_u64(buf, next);
    buf.push(b'\n');
}

fn list_topics(ctx: &mut Ctx<'_>) {
    let partitions = ctx.broker.partitions();
    let buf = ctx.out.buf_mut();
    for p in partitions {
        buf.extend_from_slice(reply::TOPIC);
        buf.extend_from_slice(&p.topic);
        if p.partitions > 1 {
            buf.push(b'/');
            push_u64(buf, u64::from(p.partition));
        }
        buf.extend_from_slice(b" first:");
        push_u64(buf, p.first);
        buf.extend_from_slice(b" next:");
        push_u64(buf, p.next);
        buf.extend_from_slice(b" bytes:");
        push_u64(buf, p.bytes);
        buf.push(b'\n');
    }
    buf.extend_from_slice(reply::END);
}

fn stats_reply(ctx: &mut Ctx<'_>) {
    let s = ctx.broker.stats.clone();
    let uptime = ctx.broker.started().elapsed().as_secs();
    let topics = ctx.broker.topic_count() as u64;
    let partitions = ctx.broker.partitions();
    let groups: Vec<(String, usize, i32)> = ctx
        .broker
        .list_groups()
        .into_iter()
        .filter_map(|(name, _)| {
            let info = ctx.broker.describe_group(&name)?;
            Some((name, info.members.len(), info.generation))
        })
        .collect();
    let buf = ctx.out.buf_mut();
    buf.extend_from_slice(b"STAT version ");
    buf.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    buf.push(b'\n');
    let mut stat = |name: &str, value: u64| {
        buf.extend_from_slice(reply::STAT);
        buf.extend_from_slice(name.as_bytes());
        buf.push(b' ');
        push_u64(buf, value);
        buf.push(b'\n');
    };
    stat("pid", u64::from(std::process::id()));
    stat("uptime_seconds", uptime);
    stat("connections_current", s.connections_current);
    stat("connections_total", s.connections_total);
    stat("connections_rejected", s.connections_rejected);
    stat("connections_evicted", s.connections_evicted);
    stat("connections_paused", s.connections_paused);
    stat("request_timeouts", s.request_timeouts);
    stat("idle_timeouts", s.idle_timeouts);
    stat("messages_produced", s.produced);
    stat("messages_consumed", s.consumed);
    stat("bytes_in", s.bytes_in);
    stat("bytes_out", s.bytes_out);
    stat("fetches_parked", s.parked_fetches);
    stat("subscribers", s.subscribers);
    stat("fsyncs", s.fsyncs);
    stat("fsync_errors", s.fsync_errors);
    stat("dir_syncs", s.dir_syncs);
    let files = ctx.broker.files();
    stat("log_files_open", files.open_count() as u64);
    stat("log_files_limit", files.limit() as u64);
    stat("log_files_closed", files.closed_count());
    stat("rss_bytes", crate::broker::rss_bytes());
    stat("topics", topics);
    for p in partitions {
        let name = if p.partitions > 1 {
            format!("{}/{}", String::from_utf8_lossy(&p.topic), p.partition)
        } else {
            String::from_utf8_lossy(&p.topic).into_owned()
        };
        stat(&format!("topic.{name}.first_offset"), p.first);
        stat(&format!("topic.{name}.next_offset"), p.next);
        stat(&format!("topic.{name}.log_bytes"), p.bytes);
        stat(&format!("topic.{name}.segments"), p.segments as u64);
    }
    stat("groups", groups.len() as u64);
    for (name, members, generation) in groups {
        stat(&format!("group.{name}.members"), members as u64);
        stat(
            &format!("group.{name}.generation"),
            generation.max(0) as u64,
        );
    }
    buf.extend_from_slice(reply::END);
}
