//! What `GET /metrics` shows: the `STATS` counters, connections by
//! protocol, `fdatasync` latency, every partition's offsets and size, and
//! every consumer group's members, committed offsets and lag. Built whole
//! on each request: about 250 bytes per partition and 150 per committed
//! offset, with short names.

use std::collections::HashMap;

use slab::Slab;

use super::exposition::{Exposition, Kind};
use crate::broker::{Broker, PartitionInfo};
use crate::protocol::Session;
use crate::server::conn::Connection;
use crate::util::histogram::Histogram;

/// The metrics, in the text exposition format.
pub(super) fn render(
    broker: &Broker,
    conns: &Slab<Connection>,
    helper_fsyncs: &Histogram,
) -> Vec<u8> {
    use Kind::{Counter, Gauge};
    let s = &broker.stats;
    let mut e = Exposition::default();
    e.family(
        "klb_build_info",
        Kind::Gauge,
        "The broker's version; always 1.",
    );
    e.sample(
        "klb_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.single(
        "klb_uptime_seconds",
        Kind::Gauge,
        "Seconds since the broker started.",
        broker.started().elapsed().as_millis() as f64 / 1000.0,
    );
    e.single(
        "klb_resident_memory_bytes",
        Kind::Gauge,
        "The broker's resident memory.",
        crate::broker::rss_bytes(),
    );

    let (mut text, mut kafka, mut undecided) = (0u64, 0u64, 0u64);
    for (_, c) in conns {
        match c.session {
            Session::Text(_) => text += 1,
            Session::Kafka(_) => kafka += 1,
            Session::Undecided(_) => undecided += 1,
        }
    }
    e.family(
        "klb_connections",
        Kind::Gauge,
        "Client connections open, by protocol (undecided: nothing received yet).",
    );
    e.sample("klb_connections", &[("protocol", "text")], text);
    e.sample("klb_connections", &[("protocol", "kafka")], kafka);
    e.sample("klb_connections", &[("protocol", "undecided")], undecided);
    let groups: Vec<(String, usize, i32)> = broker
        .list_groups()
        .into_iter()
        .filter_map(|(name, _)| {
            let info = broker.describe_group(&name)?;
            Some((name, info.members.len(), info.generation))
        })
        .collect();
    let scalars: [(&str, Kind, &str, u64); 20] = [
        (
            "klb_connections_paused",
            Gauge,
            "Clients whose requests are not read until they read their replies.",
            s.connections_paused,
        ),
        (
            "klb_connections_accepted_total",
            Counter,
            "Client connections accepted.",
            s.connections_total,
        ),
        (
            "klb_connections_rejected_total",
            Counter,
            "Client connections turned away (--max-connections, or out of descriptors).",
            s.connections_rejected,
        ),
        (
            "klb_connections_evicted_total",
            Counter,
            "Client connections closed to make room for a new one in a full table.",
            s.connections_evicted,
        ),
        (
            "klb_request_timeouts_total",
            Counter,
            "Client connections closed by --request-timeout-ms.",
            s.request_timeouts,
        ),
        (
            "klb_idle_timeouts_total",
            Counter,
            "Client connections closed by --idle-timeout-secs.",
            s.idle_timeouts,
        ),
        (
            "klb_received_bytes_total",
            Counter,
            "Protocol bytes read from clients.",
            s.bytes_in,
        ),
        (
            "klb_sent_bytes_total",
            Counter,
            "Protocol bytes written to clients.",
            s.bytes_out,
        ),
        (
            "klb_messages_produced_total",
            Counter,
            "Messages (records) stored.",
            s.produced,
        ),
        (
            "klb_messages_consumed_total",
            Counter,
            "Messages sent by CONSUME, FETCH and SUBSCRIBE.",
            s.consumed,
        ),
        (
            "klb_fetches_parked",
            Gauge,
            "FETCH requests waiting for data.",
            s.parked_fetches,
        ),
        (
            "klb_subscribers",
            Gauge,
            "Open SUBSCRIBE streams.",
            s.subscribers,
        ),
        (
            "klb_fsyncs_total",
            Counter,
            "fdatasync calls on log and offsets files.",
            s.fsyncs,
        ),
        (
            "klb_fsync_errors_total",
            Counter,
            "fdatasync and directory fsync calls that failed.",
            s.fsync_errors,
        ),
        (
            "klb_dir_syncs_total",
            Counter,
            "fsync calls on directories (new topics, rolled segments).",
            s.dir_syncs,
        ),
        (
            "klb_log_files_open",
            Gauge,
            "Log segment files open now (all partitions).",
            broker.files().open_count() as u64,
        ),
        (
            "klb_log_files_limit",
            Gauge,
            "The budget of open log files (--max-open-files, or less by the descriptor limit).",
            broker.files().limit() as u64,
        ),
        (
            "klb_log_files_closed_total",
            Counter,
            "Idle log files closed to make room in the budget.",
            broker.files().closed_count(),
        ),
        ("klb_topics", Gauge, "Topics.", broker.topic_count() as u64),
        (
            "klb_groups",
            Gauge,
            "Consumer groups being coordinated (text and Kafka).",
            groups.len() as u64,
        ),
    ];
    for (name, kind, help, value) in scalars {
        e.single(name, kind, help, value);
    }
    e.family(
        "klb_fsync_duration_seconds",
        Kind::Histogram,
        "fdatasync durations, on the helper threads and on the loop's own thread.",
    );
    e.histogram(
        "klb_fsync_duration_seconds",
        &[("thread", "helper")],
        helper_fsyncs,
    );
    e.histogram(
        "klb_fsync_duration_seconds",
        &[("thread", "loop")],
        &s.loop_fsync_seconds,
    );

    let partitions = broker.partitions();
    let names: Vec<(String, String)> = partitions
        .iter()
        .map(|p| {
            (
                String::from_utf8_lossy(&p.topic).into_owned(),
                p.partition.to_string(),
            )
        })
        .collect();
    type Field = fn(&PartitionInfo) -> u64;
    let per_partition: [(&str, &str, Field); 4] = [
        (
            "klb_partition_log_start_offset",
            "Oldest offset kept.",
            |p| p.first,
        ),
        (
            "klb_partition_log_end_offset",
            "Offset the next message will get (readers see up to here).",
            |p| p.next,
        ),
        (
            "klb_partition_size_bytes",
            "Bytes of the partition's log files.",
            |p| p.bytes,
        ),
        ("klb_partition_segments", "Log segment files.", |p| {
            p.segments as u64
        }),
    ];
    for (name, help, field) in per_partition {
        e.family(name, Kind::Gauge, help);
        for (p, (topic, partition)) in partitions.iter().zip(&names) {
            e.sample(
                name,
                &[("topic", topic), ("partition", partition)],
                field(p),
            );
        }
    }

    e.family(
        "klb_group_members",
        Kind::Gauge,
        "Members of a coordinated group.",
    );
    for (group, members, _) in &groups {
        e.sample("klb_group_members", &[("group", group)], *members);
    }
    e.family(
        "klb_group_generation",
        Kind::Gauge,
        "A coordinated group's generation.",
    );
    for (group, _, generation) in &groups {
        e.sample("klb_group_generation", &[("group", group)], *generation);
    }

    // Committed offsets of existing partitions, with their lag.
    let ends: HashMap<(&[u8], u32), u64> = partitions
        .iter()
        .map(|p| ((&*p.topic, p.partition), p.next))
        .collect();
    let mut commits: Vec<Commit> = broker
        .committed_offsets()
        .filter_map(|(topic, partition, group, offset)| {
            Some(Commit {
                end: *ends.get(&(topic, partition))?,
                group: String::from_utf8_lossy(group).into_owned(),
                topic: String::from_utf8_lossy(topic).into_owned(),
                partition,
                offset,
            })
        })
        .collect();
    commits.sort_unstable_by(|a, b| {
        (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition))
    });
    type Value = fn(&Commit) -> u64;
    let per_commit: [(&str, &str, Value); 2] = [
        (
            "klb_group_committed_offset",
            "A group's committed offset in a partition: the next message it will read.",
            |c| c.offset,
        ),
        (
            "klb_group_lag",
            "Messages of a partition after a group's committed offset (end offset - committed).",
            |c| c.end.saturating_sub(c.offset),
        ),
    ];
    for (name, help, value) in per_commit {
        e.family(name, Kind::Gauge, help);
        for c in &commits {
            let partition = c.partition.to_string();
            let labels = [
                ("group", c.group.as_str()),
                ("topic", &c.topic),
                ("partition", &partition),
            ];
            e.sample(name, &labels, value(c));
        }
    }
    e.into_bytes()
}

/// A group's committed offset in a partition that exists.
struct Commit {
    group: String,
    topic: String,
    partition: u32,
    offset: u64,
    /// The partition's end offset.
    end: u64,
}
