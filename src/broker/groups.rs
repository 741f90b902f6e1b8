//! Consumer groups: members share a topic's partitions, a member that
//! leaves or stops heartbeating has its partitions moved to the others,
//! and every change is a new *generation*.
//!
//! Two kinds of group, never mixed (a group has one protocol):
//!
//! - **Kafka groups** follow Kafka's classic protocol: members join
//!   (JoinGroup; a new member first gets an id through the
//!   MEMBER_ID_REQUIRED round trip), the broker waits until every known
//!   member rejoined (or the rebalance timeout), picks a leader and hands
//!   it every member's metadata; the leader computes the assignment and
//!   sends it in SyncGroup, which the broker relays to each member. Joins
//!   and syncs wait here like long-poll fetches: the connection is woken
//!   when its answer is ready.
//! - **Text groups** (the text protocol's `JOIN`): the broker assigns the
//!   partitions itself (round-robin over members in id order) and tells
//!   each member its partitions whenever they change.
//!
//! Members that stop heartbeating for their session timeout are removed.
//! A text member is also removed when its connection closes. Everything is
//! bounded: [`Groups::max_groups`] groups and [`MAX_MEMBERS`] members per
//! group; over a bound a client gets an error.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::ids::{ConnId, TopicId};
use super::waiters::Wake;

/// Most members in one group (Kafka's group.max.size is unbounded by
/// default; a small machine wants a bound).
pub const MAX_MEMBERS: usize = 1000;
/// Session timeouts accepted (Kafka's group.min/max.session.timeout.ms).
pub const MIN_SESSION_MS: i32 = 1000;
pub const MAX_SESSION_MS: i32 = 300_000;
/// A text member's session timeout unless its JOIN says.
pub const DEFAULT_TEXT_SESSION_MS: u64 = 10_000;
/// The protocol type of groups made by the text protocol's `JOIN`.
const PROTOCOL_TEXT: &str = "text";

/// Why a group request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    UnknownMember,
    IllegalGeneration,
    RebalanceInProgress,
    /// The group uses the other protocol, or no protocol all members share.
    InconsistentProtocol,
    /// A new member must rejoin with the id it was given (Kafka v4+).
    MemberIdRequired,
    /// Over [`MAX_MEMBERS`].
    GroupFull,
    /// Over the number of groups the broker keeps.
    TooManyGroups,
    InvalidSessionTimeout,
}

/// The group's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl Phase {
    /// Kafka's name for it (DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// What a Kafka member learns when the join phase ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member and its metadata for the chosen
    /// protocol; empty for the others.
    pub members: Vec<(String, Vec<u8>)>,
}

/// What a member waiting in the broker gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    Joined(JoinResult),
    /// SyncGroup's answer: the member's assignment, or an error.
    Synced(Result<Vec<u8>, GroupError>),
    /// A text member's partitions changed.
    Assigned {
        group: String,
        generation: i32,
        partitions: Vec<u32>,
    },
}

#[derive(Debug)]
struct Member {
    conn: ConnId,
    client_id: String,
    client_host: String,
    session: Duration,
    rebalance: Duration,
    /// (protocol name, metadata), in the member's preference order.
    protocols: Vec<(String, Vec<u8>)>,
    last_seen: Instant,
    /// Rejoined in the current rebalance (or not asked to yet).
    joined: bool,
    /// Its JoinGroup waits for the join phase to end.
    join_waiting: bool,
    /// Its SyncGroup waits for the leader's assignment.
    sync_waiting: bool,
    assignment: Vec<u8>,
    /// Text members: the partitions granted (what it was last told).
    partitions: Vec<u32>,
    /// Text members: the partitions it should have once they are free.
    target: Vec<u32>,
}

#[derive(Debug)]
struct Group {
    /// "consumer" (or another Kafka protocol type), or "text".
    protocol_type: String,
    phase: Phase,
    generation: i32,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending: HashMap<String, Instant>,
    /// When the join phase ends whatever happens.
    join_deadline: Option<Instant>,
    /// The first join phase of a new group waits for its deadline (more
    /// members starting together join the same generation).
    initial: bool,
    /// Text groups: the topic shared.
    topic: Option<TopicId>,
    /// Text groups: partitions taken from a member that has not yet
    /// acknowledged it (partition -> (member, generation to acknowledge)).
    releasing: HashMap<u32, (String, i32)>,
}

/// What DescribeGroups shows of a member.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub id: String,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
    pub partitions: Vec<u32>,
}

/// What DescribeGroups shows of a group.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub phase: Phase,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<MemberInfo>,
}

/// Every group the broker coordinates.
#[derive(Debug)]
pub struct Groups {
    groups: HashMap<String, Group>,
    /// Events for connections, taken when they are woken.
    events: HashMap<ConnId, Vec<GroupEvent>>,
    max_groups: usize,
    /// How long a new Kafka group's first rebalance waits for members
    /// (Kafka's group.initial.rebalance.delay.ms).
    initial_delay: Duration,
    next_id: u64,
}

/// Parameters of a Kafka JoinGroup.
pub struct Join<'a> {
    pub group: &'a str,
    pub member_id: &'a str,
    pub client_id: &'a str,
    pub client_host: &'a str,
    pub session_ms: i32,
    pub rebalance_ms: i32,
    pub protocol_type: &'a str,
    pub protocols: Vec<(String, Vec<u8>)>,
    /// v4+: a new member gets its id through MEMBER_ID_REQUIRED first.
    pub require_known_id: bool,
}

impl Groups {
    pub fn new(max_groups: usize, initial_delay: Duration) -> Self {
        Groups {
            groups: HashMap::new(),
            events: HashMap::new(),
            max_groups,
            initial_delay,
            next_id: 0,
        }
    }

    pub fn max_groups(&self) -> usize {
        self.max_groups
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Whether `group` exists here (coordinated now).
    pub fn contains(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_id += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let prefix: String = client_id.chars().take(64).collect();
        format!(
            "{}-{:08x}{:08x}",
            if prefix.is_empty() { "member" } else { &prefix },
            self.next_id,
            nanos
        )
    }

    /// A Kafka JoinGroup from `conn`. `Ok(None)`: it waits (the connection
    /// is woken with a [`GroupEvent::Joined`]); `Ok(Some(result))`: the
    /// answer now (MEMBER_ID_REQUIRED carries the new id).
    pub fn join(
        &mut self,
        j: &Join<'_>,
        conn: ConnId,
        now: Instant,
        woken: &mut Vec<(ConnId, Wake)>,
    ) -> Result<Option<JoinResult>, GroupError> {
        if !(MIN_SESSION_MS..=MAX_SESSION_MS).contains(&j.session_ms) {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if j.protocol_type == PROTOCOL_TEXT {
            return Err(GroupError::InconsistentProtocol);
        }
        let new_id = if j.member_id.is_empty() {
            Some(self.new_member_id(j.client_id))
        } else {
            None
        };
        let Groups {
            groups,
            events,
            max_groups,
            initial_delay,
            ..
        } = self;
        let g = group_for(groups, *max_groups, j.group, j.protocol_type)?;
        // A new member must share a protocol with those already there.
        if !g.members.is_empty()
            && !j.protocols.iter().any(|(name, _)| {
                g.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
        {
            return Err(GroupError::InconsistentProtocol);
        }
        let member_id = match new_id {
            Some(id) => {
                if g.members.len() + g.pending.len() >= MAX_MEMBERS {
                    return Err(GroupError::GroupFull);
                }
                if j.require_known_id {
                    g.pending
                        .insert(id.clone(), now + Duration::from_millis(j.session_ms as u64));
                    return Ok(Some(JoinResult {
                        error: Some(GroupError::MemberIdRequired),
                        generation: -1,
                        protocol: String::new(),
                        leader: String::new(),
                        member_id: id,
                        members: Vec::new(),
                    }));
                }
                id
            }
            None => {
                let id = j.member_id.to_string();
                if !g.members.contains_key(&id) && g.pending.remove(&id).is_none() {
                    return Err(GroupError::UnknownMember);
                }
                id
            }
        };
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                conn,
                client_id: j.client_id.to_string(),
                client_host: j.client_host.to_string(),
                session: Duration::from_millis(j.session_ms as u64),
                rebalance: Duration::from_millis(j.rebalance_ms.max(0) as u64),
                protocols: Vec::new(),
                last_seen: now,
                joined: false,
                join_waiting: false,
                sync_waiting: false,
                assignment: Vec::new(),
                partitions: Vec::new(),
                target: Vec::new(),
            });
        // Same metadata from a member of a stable group: a no-op rejoin
        // answers at once (Kafka does the same for a follower).
        let unchanged = member.protocols == j.protocols && g.phase == Phase::Stable;
        member.conn = conn;
        member.session = Duration::from_millis(j.session_ms as u64);
        member.rebalance = Duration::from_millis(j.rebalance_ms.max(0) as u64);
        member.protocols = j.protocols.clone();
        member.last_seen = now;
        member.joined = true;
        member.join_waiting = true;
        if unchanged && g.leader.as_deref() != Some(&member_id) {
            member.join_waiting = false;
            return Ok(Some(join_result(g, &member_id)));
        }
        if g.phase != Phase::PreparingRebalance {
            let first = g.phase == Phase::Empty && g.generation == 0;
            prepare_rebalance(g, now, events, woken);
            if first && !initial_delay.is_zero() {
                g.initial = true;
                g.join_deadline = Some(now + *initial_delay);
            }
            if let Some(m) = g.members.get_mut(&member_id) {
                m.joined = true;
            }
        }
        try_complete_join(g, now, events, woken);
        Ok(None)
    }

    /// A Kafka SyncGroup. `Ok(None)`: it waits for the leader's
    /// assignment (woken with [`GroupEvent::Synced`]).
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Vec<u8>)>,
        conn: ConnId,
        now: Instant,
        woken: &mut Vec<(ConnId, Wake)>,
    ) -> Result<Option<Vec<u8>>, GroupError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or(GroupError::UnknownMember)?;
        let m = g
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMember)?;
        m.last_seen = now;
        if generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match g.phase {
            Phase::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            Phase::Empty => Err(GroupError::UnknownMember),
            Phase::Stable => Ok(Some(m.assignment.clone())),
            Phase::CompletingRebalance => {
                if g.leader.as_deref() != Some(member_id) {
                    m.sync_waiting = true;
                    m.conn = conn;
                    return Ok(None);
                }
                let given: HashMap<String, Vec<u8>> = assignments.into_iter().collect();
                for (id, m) in g.members.iter_mut() {
                    m.assignment = given.get(id).cloned().unwrap_or_default();
                    if m.sync_waiting {
                        m.sync_waiting = false;
                        push_event(
                            &mut self.events,
                            woken,
                            m.conn,
                            GroupEvent::Synced(Ok(m.assignment.clone())),
                        );
                    }
                }
                g.phase = Phase::Stable;
                Ok(g.members.get(member_id).map(|m| m.assignment.clone()))
            }
        }
    }

    /// A heartbeat of a Kafka member.
    pub fn heartbeat(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        now: Instant,
    ) -> Result<(), GroupError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or(GroupError::UnknownMember)?;
        let m = g
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMember)?;
        m.last_seen = now;
        if g.phase == Phase::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// Members leave (LeaveGroup; a text member's LEAVE or close).
    pub fn leave(
        &mut self,
        group: &str,
        member_ids: &[&str],
        now: Instant,
        woken: &mut Vec<(ConnId, Wake)>,
    ) -> Vec<Result<(), GroupError>> {
        let Some(g) = self.groups.get_mut(group) else {
            return member_ids
                .iter()
                .map(|_| Err(GroupError::UnknownMember))
                .collect();
        };
        let results: Vec<Result<(), GroupError>> = member_ids
            .iter()
            .map(|id| {
                g.members
                    .remove(*id)
                    .map(drop)
                    .ok_or(GroupError::UnknownMember)
            })
            .collect();
        if results.iter().any(Result::is_ok) {
            membership_changed(g, now, &mut self.events, woken);
        }
        self.drop_if_empty(group);
        results
    }

    /// Whether a commit for `group` by `member_id` in `generation` is
    /// allowed: Kafka's rules for a group with members (its own member in
    /// its generation); anyone may commit for a group nobody is in.
    pub fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        let Some(g) = self.groups.get(group) else {
            return Ok(());
        };
        if g.protocol_type == PROTOCOL_TEXT {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() {
            return if g.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration)
            };
        }
        if !g.members.contains_key(member_id) {
            return Err(GroupError::UnknownMember);
        }
        // As Kafka: members may commit while a rebalance is being prepared
        // (a consumer commits what it processed when its partitions are
        // revoked), not while the new assignment is being handed out.
        if g.phase == Phase::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        if generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// A text member joins `group` to share `topic` (of `partitions`
    /// partitions). Returns its member id; its assignment (and every other
    /// member's new one) arrives as [`GroupEvent::Assigned`].
    #[allow(clippy::too_many_arguments)]
    pub fn join_text(
        &mut self,
        group: &str,
        topic: TopicId,
        partitions: u32,
        session: Duration,
        conn: ConnId,
        now: Instant,
        woken: &mut Vec<(ConnId, Wake)>,
    ) -> Result<String, GroupError> {
        let id = self.new_member_id("text");
        let Groups {
            groups,
            events,
            max_groups,
            ..
        } = self;
        let g = group_for(groups, *max_groups, group, PROTOCOL_TEXT)?;
        if g.topic.is_some_and(|t| t != topic) && !g.members.is_empty() {
            return Err(GroupError::InconsistentProtocol);
        }
        if g.members.len() >= MAX_MEMBERS {
            return Err(GroupError::GroupFull);
        }
        g.topic = Some(topic);
        g.members.insert(
            id.clone(),
            Member {
                conn,
                client_id: "text".into(),
                client_host: String::new(),
                session,
                rebalance: Duration::ZERO,
                protocols: Vec::new(),
                last_seen: now,
                joined: true,
                join_waiting: false,
                sync_waiting: false,
                assignment: Vec::new(),
                partitions: Vec::new(),
                target: Vec::new(),
            },
        );
        assign_text(group, g, partitions, events, woken);
        Ok(id)
    }

    /// A text member's heartbeat: its generation and partitions now. With
    /// `acked`, the member says it has applied the assignment of that
    /// generation (committed and stopped reading what it gave up), so
    /// those partitions can go to their new owners. Without it, the
    /// current generation is taken as acknowledged.
    pub fn heartbeat_text(
        &mut self,
        group: &str,
        member_id: &str,
        acked: Option<i32>,
        now: Instant,
        woken: &mut Vec<(ConnId, Wake)>,
    ) -> Result<(i32, Vec<u32>), GroupError> {
        let Groups { groups, events, .. } = self;
        let g = groups.get_mut(group).ok_or(GroupError::UnknownMember)?;
        let m = g
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMember)?;
        m.last_seen = now;
        let acked = acked.unwrap_or(g.generation);
        let before = g.releasing.len();
        g.releasing
            .retain(|_, (holder, generation)| !(holder == member_id && acked >= *generation));
        if g.releasing.len() != before {
            grant_text(group, g, events, woken);
        }
        let m = g.members.get(member_id).ok_or(GroupError::UnknownMember)?;
        Ok((g.generation, m.partitions.clone()))
    }

    /// Re-assigns a text group's partitions (its topic grew, or a member
    /// changed) given the topic's partition count.
    pub fn text_partitions_changed(
        &mut self,
        group: &str,
        partitions: u32,
        woken: &mut Vec<(ConnId, Wake)>,
    ) {
        if let Some(g) = self.groups.get_mut(group) {
            assign_text(group, g, partitions, &mut self.events, woken);
        }
    }

    /// The connection closed: text members on it leave at once; Kafka
    /// members stay until their session times out.
    pub fn connection_closed(
        &mut self,
        conn: ConnId,
        now: Instant,
        woken: &mut Vec<(ConnId, Wake)>,
    ) -> Vec<String> {
        self.events.remove(&conn);
        let mut changed = Vec::new();
        for (name, g) in self.groups.iter_mut() {
            let before = g.members.len();
            g.members
                .retain(|_, m| !(m.conn == conn && g.protocol_type == PROTOCOL_TEXT));
            for m in g.members.values_mut() {
                if m.conn == conn {
                    m.join_waiting = false;
                    m.sync_waiting = false;
                }
            }
            if g.members.len() != before {
                changed.push(name.clone());
            }
        }
        for name in &changed {
            if let Some(g) = self.groups.get_mut(name) {
                membership_changed(g, now, &mut self.events, woken);
            }
        }
        let empties: Vec<String> = changed.clone();
        for name in empties {
            self.drop_if_empty(&name);
        }
        changed
    }

    /// Events for `conn`, once.
    pub fn take_events(&mut self, conn: ConnId) -> Vec<GroupEvent> {
        self.events.remove(&conn).unwrap_or_default()
    }

    /// Removes members whose session timed out and ends join phases past
    /// their deadline. Returns the text groups whose assignment changed
    /// (their topic's partition count must be applied).
    pub fn expire(&mut self, now: Instant, woken: &mut Vec<(ConnId, Wake)>) -> Vec<String> {
        let mut text_changed = Vec::new();
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            let Some(g) = self.groups.get_mut(&name) else {
                continue;
            };
            g.pending.retain(|_, deadline| *deadline > now);
            let before = g.members.len();
            g.members.retain(|id, m| {
                // A member waiting in a join is alive; the rest must have
                // been heard from within their session timeout.
                let alive = m.join_waiting || now.duration_since(m.last_seen) <= m.session;
                if !alive {
                    log::info!(
                        "group={name} member={id} expired (no heartbeat for {:?})",
                        m.session
                    );
                }
                alive
            });
            if g.members.len() != before {
                if g.protocol_type == PROTOCOL_TEXT {
                    text_changed.push(name.clone());
                } else {
                    membership_changed(g, now, &mut self.events, woken);
                }
            }
            if g.phase == Phase::PreparingRebalance && g.join_deadline.is_some_and(|d| d <= now) {
                complete_join(g, &mut self.events, woken);
            }
            self.drop_if_empty(&name);
        }
        text_changed
    }

    /// When [`expire`](Self::expire) should next run.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|g| {
                g.members
                    .values()
                    .filter(|m| !m.join_waiting)
                    .map(|m| m.last_seen + m.session)
                    .chain(g.join_deadline)
                    .chain(g.pending.values().copied())
            })
            .min()
    }

    /// What DescribeGroups shows.
    pub fn describe(&self, group: &str) -> Option<GroupInfo> {
        let g = self.groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupInfo {
            phase: g.phase,
            protocol_type: g.protocol_type.clone(),
            protocol: protocol.clone(),
            generation: g.generation,
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberInfo {
                    id: id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                    partitions: m.partitions.clone(),
                })
                .collect(),
        })
    }

    /// Every group: (name, protocol type).
    pub fn list(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .groups
            .iter()
            .map(|(n, g)| (n.clone(), g.protocol_type.clone()))
            .collect();
        out.sort();
        out
    }

    /// A text group's topic.
    pub fn text_topic(&self, group: &str) -> Option<TopicId> {
        self.groups.get(group).and_then(|g| g.topic)
    }

    /// The protocol type of a group, if it exists.
    pub fn protocol_type(&self, group: &str) -> Option<&str> {
        self.groups.get(group).map(|g| g.protocol_type.as_str())
    }

    fn drop_if_empty(&mut self, name: &str) {
        if self
            .groups
            .get(name)
            .is_some_and(|g| g.members.is_empty() && g.pending.is_empty())
        {
            // Its commits stay in the offsets store; the group itself is
            // made again by the next join.
            self.groups.remove(name);
        }
    }
}

/// The group `name`, made if missing (within `max_groups`), if it uses
/// `protocol_type` (an empty group takes the new one).
fn group_for<'a>(
    groups: &'a mut HashMap<String, Group>,
    max_groups: usize,
    name: &str,
    protocol_type: &str,
) -> Result<&'a mut Group, GroupError> {
    if !groups.contains_key(name) {
        if groups.len() >= max_groups {
            return Err(GroupError::TooManyGroups);
        }
        groups.insert(
            name.to_string(),
            Group {
                protocol_type: protocol_type.to_string(),
                phase: Phase::Empty,
                generation: 0,
                protocol: None,
                leader: None,
                members: BTreeMap::new(),
                pending: HashMap::new(),
                join_deadline: None,
                initial: false,
                topic: None,
                releasing: HashMap::new(),
            },
        );
    }
    let g = groups.get_mut(name).ok_or(GroupError::UnknownMember)?;
    if g.protocol_type != protocol_type {
        if g.members.is_empty() && g.pending.is_empty() {
            g.protocol_type = protocol_type.to_string();
        } else {
            return Err(GroupError::InconsistentProtocol);
        }
    }
    Ok(g)
}

fn push_event(
    events: &mut HashMap<ConnId, Vec<GroupEvent>>,
    woken: &mut Vec<(ConnId, Wake)>,
    conn: ConnId,
    event: GroupEvent,
) {
    events.entry(conn).or_default().push(event);
    woken.push((conn, Wake::Group));
}

/// Starts a rebalance: every member must rejoin (answered when all did,
/// or at the deadline); syncs waiting are told to rejoin.
fn prepare_rebalance(
    g: &mut Group,
    now: Instant,
    events: &mut HashMap<ConnId, Vec<GroupEvent>>,
    woken: &mut Vec<(ConnId, Wake)>,
) {
    g.phase = Phase::PreparingRebalance;
    let timeout = g
        .members
        .values()
        .map(|m| m.rebalance)
        .max()
        .unwrap_or_default()
        .max(Duration::from_millis(100));
    g.join_deadline = Some(now + timeout);
    for m in g.members.values_mut() {
        m.joined = m.join_waiting;
        if m.sync_waiting {
            m.sync_waiting = false;
            push_event(
                events,
                woken,
                m.conn,
                GroupEvent::Synced(Err(GroupError::RebalanceInProgress)),
            );
        }
    }
}

fn try_complete_join(
    g: &mut Group,
    _now: Instant,
    events: &mut HashMap<ConnId, Vec<GroupEvent>>,
    woken: &mut Vec<(ConnId, Wake)>,
) {
    if g.phase == Phase::PreparingRebalance && !g.initial && g.members.values().all(|m| m.joined) {
        complete_join(g, events, woken);
    }
}

/// Ends the join phase: members that did not rejoin are dropped, a new
/// generation starts, the leader gets everyone's metadata.
fn complete_join(
    g: &mut Group,
    events: &mut HashMap<ConnId, Vec<GroupEvent>>,
    woken: &mut Vec<(ConnId, Wake)>,
) {
    g.members.retain(|_, m| m.joined);
    g.join_deadline = None;
    g.initial = false;
    g.generation += 1;
    if g.members.is_empty() {
        g.phase = Phase::Empty;
        g.leader = None;
        g.protocol = None;
        return;
    }
    // The first protocol of the first member that every member supports.
    let protocol = g
        .members
        .values()
        .next()
        .and_then(|first| {
            first.protocols.iter().map(|(n, _)| n.clone()).find(|name| {
                g.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
        })
        .unwrap_or_default();
    g.protocol = Some(protocol);
    if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
        g.leader = g.members.keys().next().cloned();
    }
    g.phase = Phase::CompletingRebalance;
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let result = join_result(g, &id);
        if let Some(m) = g.members.get_mut(&id) {
            m.assignment.clear();
            if m.join_waiting {
                m.join_waiting = false;
                push_event(events, woken, m.conn, GroupEvent::Joined(result));
            }
        }
    }
}

fn join_result(g: &Group, member_id: &str) -> JoinResult {
    let protocol = g.protocol.clone().unwrap_or_default();
    let leader = g.leader.clone().unwrap_or_default();
    let members = if leader == member_id {
        g.members
            .iter()
            .map(|(id, m)| {
                let md = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                (id.clone(), md)
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResult {
        error: None,
        generation: g.generation,
        protocol,
        leader,
        member_id: member_id.to_string(),
        members,
    }
}

/// A Kafka group's members changed outside a join (leave, expiry): the
/// others must rejoin. An emptied group becomes Empty, a new generation.
fn membership_changed(
    g: &mut Group,
    now: Instant,
    events: &mut HashMap<ConnId, Vec<GroupEvent>>,
    woken: &mut Vec<(ConnId, Wake)>,
) {
    if g.protocol_type == PROTOCOL_TEXT {
        return;
    }
    if g.members.is_empty() {
        g.phase = Phase::Empty;
        g.generation += 1;
        g.leader = None;
        g.join_deadline = None;
        return;
    }
    if g.phase == Phase::PreparingRebalance {
        try_complete_join(g, now, events, woken);
    } else {
        prepare_rebalance(g, now, events, woken);
    }
}

/// Assigns a text group's partitions round-robin over its members in id
/// order. A partition moving from one member to another is first taken
/// from its holder (told at once) and given to the new owner only once
/// the holder acknowledged (see [`Groups::heartbeat_text`]), left or
/// expired, so two members never read it at the same time.
fn assign_text(
    name: &str,
    g: &mut Group,
    partitions: u32,
    events: &mut HashMap<ConnId, Vec<GroupEvent>>,
    woken: &mut Vec<(ConnId, Wake)>,
) {
    g.generation += 1;
    g.phase = if g.members.is_empty() {
        Phase::Empty
    } else {
        Phase::Stable
    };
    // Holders that are gone release at once.
    g.releasing
        .retain(|_, (holder, _)| g.members.contains_key(holder));
    let n = g.members.len().max(1);
    let generation = g.generation;
    let mut taken = Vec::new();
    for (i, (id, m)) in g.members.iter_mut().enumerate() {
        m.target = (0..partitions).filter(|p| *p as usize % n == i).collect();
        let before = m.partitions.len();
        m.partitions.retain(|p| {
            let keep = m.target.contains(p);
            if !keep {
                taken.push((*p, id.clone()));
            }
            keep
        });
        if m.partitions.len() != before {
            push_event(
                events,
                woken,
                m.conn,
                GroupEvent::Assigned {
                    group: name.to_string(),
                    generation,
                    partitions: m.partitions.clone(),
                },
            );
        }
    }
    for (p, holder) in taken {
        g.releasing.insert(p, (holder, generation));
    }
    grant_text(name, g, events, woken);
}

/// Gives each text member the partitions of its target that nobody holds
/// or is releasing, and tells those whose partitions grew.
fn grant_text(
    name: &str,
    g: &mut Group,
    events: &mut HashMap<ConnId, Vec<GroupEvent>>,
    woken: &mut Vec<(ConnId, Wake)>,
) {
    let held: Vec<u32> = g
        .members
        .values()
        .flat_map(|m| m.partitions.iter().copied())
        .collect();
    let generation = g.generation;
    for m in g.members.values_mut() {
        let mut grew = false;
        for &p in &m.target {
            if !m.partitions.contains(&p) && !held.contains(&p) && !g.releasing.contains_key(&p) {
                m.partitions.push(p);
                grew = true;
            }
        }
        if grew {
            m.partitions.sort_unstable();
            push_event(
                events,
                woken,
                m.conn,
                GroupEvent::Assigned {
                    group: name.to_string(),
                    generation,
                    partitions: m.partitions.clone(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(slot: u32) -> ConnId {
        ConnId {
            slot,
            generation: 1,
        }
    }

    fn join<'a>(member_id: &'a str) -> Join<'a> {
        Join {
            group: "g",
            member_id,
            client_id: "c",
            client_host: "/127.0.0.1",
            session_ms: 10_000,
            rebalance_ms: 5_000,
            protocol_type: "consumer",
            protocols: vec![("range".into(), b"md".to_vec())],
            require_known_id: true,
        }
    }

    fn joined(groups: &mut Groups, c: ConnId) -> JoinResult {
        match groups.take_events(c).pop() {
            Some(GroupEvent::Joined(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_members_join_a_leader_assigns_and_a_leave_rebalances() {
        let mut gs = Groups::new(10, Duration::ZERO);
        let now = Instant::now();
        let mut woken = Vec::new();
        // MEMBER_ID_REQUIRED round trip.
        let first = gs
            .join(&join(""), conn(1), now, &mut woken)
            .unwrap()
            .unwrap();
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        let a = first.member_id.clone();
        assert_eq!(gs.join(&join(&a), conn(1), now, &mut woken), Ok(None));
        let ra = joined(&mut gs, conn(1));
        assert_eq!((ra.generation, ra.leader.as_str()), (1, a.as_str()));
        assert_eq!(ra.members.len(), 1);
        // The leader syncs its assignment: stable.
        assert_eq!(
            gs.sync(
                "g",
                1,
                &a,
                vec![(a.clone(), b"all".to_vec())],
                conn(1),
                now,
                &mut woken
            ),
            Ok(Some(b"all".to_vec()))
        );
        // A second member: the first is told to rejoin by its heartbeat.
        let b = gs
            .join(&join(""), conn(2), now, &mut woken)
            .unwrap()
            .unwrap()
            .member_id;
        assert_eq!(gs.join(&join(&b), conn(2), now, &mut woken), Ok(None));
        assert_eq!(
            gs.heartbeat("g", 1, &a, now),
            Err(GroupError::RebalanceInProgress)
        );
        assert_eq!(gs.join(&join(&a), conn(1), now, &mut woken), Ok(None));
        let ra = joined(&mut gs, conn(1));
        let rb = joined(&mut gs, conn(2));
        assert_eq!((ra.generation, rb.generation), (2, 2));
        assert_eq!(ra.members.len(), 2, "the leader sees everyone");
        assert!(rb.members.is_empty());
        // The follower waits for the leader's sync.
        assert_eq!(
            gs.sync("g", 2, &b, vec![], conn(2), now, &mut woken),
            Ok(None)
        );
        let assignments = vec![(a.clone(), b"p0".to_vec()), (b.clone(), b"p1".to_vec())];
        assert_eq!(
            gs.sync("g", 2, &a, assignments, conn(1), now, &mut woken),
            Ok(Some(b"p0".to_vec()))
        );
        assert_eq!(
            gs.take_events(conn(2)),
            vec![GroupEvent::Synced(Ok(b"p1".to_vec()))]
        );
        assert_eq!(gs.heartbeat("g", 2, &b, now), Ok(()));
        assert_eq!(
            gs.heartbeat("g", 1, &b, now),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(gs.check_commit("g", 2, &a), Ok(()));
        assert_eq!(
            gs.check_commit("g", 2, "nobody"),
            Err(GroupError::UnknownMember)
        );
        assert_eq!(
            gs.check_commit("g", 1, &a),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            gs.check_commit("g", -1, ""),
            Err(GroupError::IllegalGeneration)
        );
        // b leaves: a must rejoin; alone, it completes at once.
        assert_eq!(gs.leave("g", &[&b], now, &mut woken), vec![Ok(())]);
        assert_eq!(
            gs.heartbeat("g", 2, &a, now),
            Err(GroupError::RebalanceInProgress)
        );
        assert_eq!(gs.join(&join(&a), conn(1), now, &mut woken), Ok(None));
        assert_eq!(joined(&mut gs, conn(1)).generation, 3);
    }

    #[test]
    fn a_new_group_waits_its_initial_delay_for_more_members() {
        let mut gs = Groups::new(10, Duration::from_secs(3));
        let now = Instant::now();
        let mut woken = Vec::new();
        let mut j = join("");
        j.require_known_id = false;
        assert_eq!(gs.join(&j, conn(1), now, &mut woken), Ok(None));
        assert_eq!(gs.join(&j, conn(2), now, &mut woken), Ok(None));
        assert!(
            gs.take_events(conn(1)).is_empty(),
            "still gathering members"
        );
        gs.expire(now + Duration::from_secs(3), &mut woken);
        let (a, b) = (joined(&mut gs, conn(1)), joined(&mut gs, conn(2)));
        assert_eq!(
            (a.generation, b.generation),
            (1, 1),
            "one generation for both"
        );
        // Commits are allowed while a rebalance is prepared, not completed.
        assert_eq!(
            gs.check_commit("g", 1, &a.member_id),
            Err(GroupError::RebalanceInProgress)
        );
    }

    #[test]
    fn silent_members_expire_and_the_rest_rebalance() {
        let mut gs = Groups::new(10, Duration::ZERO);
        let now = Instant::now();
        let mut woken = Vec::new();
        let mut j = join("");
        j.require_known_id = false;
        gs.join(&j, conn(1), now, &mut woken).unwrap();
        let a = joined(&mut gs, conn(1)).member_id;
        gs.sync("g", 1, &a, vec![], conn(1), now, &mut woken)
            .unwrap();
        let later = now + Duration::from_secs(11);
        gs.expire(later, &mut woken);
        assert!(!gs.contains("g"), "its only member expired: the group goes");
        assert_eq!(
            gs.heartbeat("g", 1, &a, later),
            Err(GroupError::UnknownMember)
        );
    }

    #[test]
    fn text_groups_are_assigned_by_the_broker_and_never_mix_with_kafka() {
        let mut gs = Groups::new(10, Duration::ZERO);
        let now = Instant::now();
        let mut woken = Vec::new();
        let s = Duration::from_secs(10);
        let last = |gs: &mut Groups, c| match gs.take_events(c).pop() {
            Some(GroupEvent::Assigned {
                generation,
                partitions,
                ..
            }) => (generation, partitions),
            other => panic!("{other:?}"),
        };
        let a = gs
            .join_text("t", 3, 4, s, conn(1), now, &mut woken)
            .unwrap();
        assert_eq!(last(&mut gs, conn(1)), (1, vec![0, 1, 2, 3]));
        // A second member: the first gives up half at once; the second
        // gets them only once the first acknowledged generation 2.
        let b = gs
            .join_text("t", 3, 4, s, conn(2), now, &mut woken)
            .unwrap();
        let (ga, pa) = last(&mut gs, conn(1));
        assert_eq!(ga, 2);
        assert_eq!(pa.len(), 2);
        assert!(
            gs.take_events(conn(2)).is_empty(),
            "nothing before the release"
        );
        assert_eq!(
            gs.heartbeat_text("t", &a, Some(1), now, &mut woken)
                .unwrap()
                .0,
            2
        );
        assert!(
            gs.take_events(conn(2)).is_empty(),
            "an older ack releases nothing"
        );
        gs.heartbeat_text("t", &a, Some(2), now, &mut woken)
            .unwrap();
        let (_, pb) = last(&mut gs, conn(2));
        assert_eq!(pa.len() + pb.len(), 4);
        assert!(pa.iter().all(|p| !pb.contains(p)));
        assert_eq!(
            gs.heartbeat_text("t", &b, None, now, &mut woken).unwrap().1,
            pb
        );
        // Closing a's connection gives everything to b at once.
        gs.connection_closed(conn(1), now, &mut woken);
        gs.text_partitions_changed("t", 4, &mut woken);
        assert_eq!(last(&mut gs, conn(2)).1, vec![0, 1, 2, 3]);
        assert_eq!(
            gs.heartbeat_text("t", &a, None, now, &mut woken),
            Err(GroupError::UnknownMember)
        );
        // A Kafka member cannot join a text group.
        let mut j = join("");
        j.group = "t";
        assert_eq!(
            gs.join(&j, conn(3), now, &mut woken),
            Err(GroupError::InconsistentProtocol)
        );
        // Nor a text member a Kafka group.
        gs.join(&join(""), conn(4), now, &mut woken).unwrap();
        assert_eq!(
            gs.join_text("g", 3, 4, s, conn(5), now, &mut woken),
            Err(GroupError::InconsistentProtocol)
        );
    }

    #[test]
    fn groups_are_bounded() {
        let mut gs = Groups::new(2, Duration::ZERO);
        let now = Instant::now();
        let mut woken = Vec::new();
        for name in ["a", "b"] {
            let mut j = join("");
            j.group = name;
            gs.join(&j, conn(1), now, &mut woken).unwrap();
        }
        let mut j = join("");
        j.group = "c";
        assert_eq!(
            gs.join(&j, conn(1), now, &mut woken),
            Err(GroupError::TooManyGroups)
        );
    }
}
