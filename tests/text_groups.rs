//! Consumer groups over the text protocol (`JOIN`, `HEARTBEAT`, `LEAVE`
//! and the `ASSIGNED` notices), driven as a user would in `nc`, against
//! the real broker.

mod common;

use std::time::{Duration, Instant};

use common::{BrokerProcess, Client, InProcess, temp_data_dir};

/// `JOIN <group> [<session_ms>]`, checking the reply; returns the member id.
fn join(c: &mut Client, group: &str, session_ms: Option<u64>) -> String {
    let request = match session_ms {
        Some(ms) => format!("JOIN {group} {ms}"),
        None => format!("JOIN {group}"),
    };
    let reply = c.request(&request);
    let rest = reply
        .strip_prefix(&format!("JOINED {group} member:"))
        .unwrap_or_else(|| panic!("{request}: {reply}"));
    let (member, session) = rest.split_once(' ').expect("member and session");
    assert_eq!(
        session,
        format!("session_ms:{}", session_ms.unwrap_or(10_000))
    );
    assert!(member.starts_with("text-"), "{member}");
    member.to_string()
}

#[test]
fn join_heartbeat_and_leave_by_hand() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("CREATE orders 3"), "CREATED orders");
    assert_eq!(c.request("USE orders"), "USING orders");
    join(&mut c, "billing", None);
    assert_eq!(c.line(), "ASSIGNED billing generation:1 partitions:0,1,2");
    assert_eq!(
        c.request("HEARTBEAT billing"),
        "ALIVE billing generation:1 partitions:0,1,2"
    );
    assert_eq!(
        c.request("HEARTBEAT billing 1"),
        "ALIVE billing generation:1 partitions:0,1,2"
    );
    assert_eq!(
        c.request("JOIN billing"),
        "INVALID_REQUEST already in this group on this connection; LEAVE it first"
    );
    // A member commits per partition as any client does.
    assert_eq!(c.request("USE orders/1"), "USING orders/1");
    assert_eq!(c.request("PRODUCE x"), "ACK offset:0");
    assert_eq!(c.request("COMMIT billing 1"), "COMMITTED billing 1");
    assert_eq!(c.request("OFFSET billing"), "OFFSET billing 1");
    assert_eq!(c.request("LEAVE billing"), "LEFT billing");
    assert_eq!(
        c.request("LEAVE billing"),
        "INVALID_REQUEST not in this group on this connection"
    );
    assert_eq!(
        c.request("HEARTBEAT billing"),
        "INVALID_REQUEST not in this group on this connection; JOIN it first"
    );
    for (request, reply) in [
        (
            "JOIN billing 999",
            "INVALID_REQUEST session_ms must be a number from 1000 to 300000",
        ),
        (
            "JOIN",
            "INVALID_REQUEST wrong number of arguments; usage: JOIN <group> [<session_ms>]",
        ),
        (
            "JOIN ../x",
            "INVALID_REQUEST names are 1 to 64 characters of A-Z a-z 0-9 . _ - and not . or ..",
        ),
        (
            "HEARTBEAT billing x",
            "INVALID_REQUEST a generation is a number",
        ),
    ] {
        assert_eq!(c.request(request), reply);
    }
    // The group, empty, is gone from STATS; its commit stays.
    assert_eq!(c.stat("groups"), 0);
    assert_eq!(c.request("OFFSET billing"), "OFFSET billing 1");
}

#[test]
fn a_moved_partition_reaches_its_new_owner_only_after_the_old_one_acks() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut a = broker.client();
    let mut b = broker.client();
    assert_eq!(a.request("CREATE jobs 3"), "CREATED jobs");
    assert_eq!(a.request("USE jobs"), "USING jobs");
    assert_eq!(b.request("USE jobs"), "USING jobs");
    join(&mut a, "w", None);
    assert_eq!(a.line(), "ASSIGNED w generation:1 partitions:0,1,2");
    join(&mut b, "w", None);
    // a is told at once what it gives up; b gets nothing until a acks.
    assert_eq!(a.line(), "ASSIGNED w generation:2 partitions:0,2");
    assert_eq!(
        b.request("HEARTBEAT w"),
        "ALIVE w generation:2 partitions:none"
    );
    assert_eq!(
        a.request("HEARTBEAT w 1"),
        "ALIVE w generation:2 partitions:0,2",
        "acking an older generation releases nothing"
    );
    assert_eq!(
        b.request("HEARTBEAT w"),
        "ALIVE w generation:2 partitions:none"
    );
    assert_eq!(
        a.request("HEARTBEAT w 2"),
        "ALIVE w generation:2 partitions:0,2"
    );
    assert_eq!(b.line(), "ASSIGNED w generation:2 partitions:1");
    assert_eq!(
        b.request("HEARTBEAT w 2"),
        "ALIVE w generation:2 partitions:1"
    );
    // a's connection closes: b gets everything at once, no ack needed
    // from a member that is gone.
    drop(a);
    assert_eq!(b.line(), "ASSIGNED w generation:3 partitions:0,1,2");
    assert_eq!(broker.client().stat("group.w.members"), 1);
}

#[test]
fn a_silent_member_expires_after_its_session_and_its_partitions_move() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut quiet = broker.client();
    let mut live = broker.client();
    assert_eq!(quiet.request("CREATE jobs 2"), "CREATED jobs");
    assert_eq!(quiet.request("USE jobs"), "USING jobs");
    assert_eq!(live.request("USE jobs"), "USING jobs");
    join(&mut quiet, "w", Some(1000));
    assert_eq!(quiet.line(), "ASSIGNED w generation:1 partitions:0,1");
    let joined = Instant::now();
    join(&mut live, "w", None);
    assert_eq!(quiet.line(), "ASSIGNED w generation:2 partitions:0");
    // `quiet` never heartbeats: once its 1 s session has passed it is
    // removed and `live` gets both partitions, without asking.
    assert_eq!(live.line(), "ASSIGNED w generation:3 partitions:0,1");
    let waited = joined.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(5),
        "expired after {waited:?}"
    );
    assert_eq!(
        quiet.request("HEARTBEAT w"),
        "UNKNOWN_MEMBER w no longer has this member (its session timed out); JOIN again"
    );
    // It may join again, as a new member.
    join(&mut quiet, "w", None);
    assert_eq!(live.line(), "ASSIGNED w generation:4 partitions:0");
    assert_eq!(
        live.request("HEARTBEAT w 4"),
        "ALIVE w generation:4 partitions:0"
    );
    assert_eq!(quiet.line(), "ASSIGNED w generation:4 partitions:1");
}

#[test]
fn a_text_group_reads_one_topic() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut a = broker.client();
    let mut b = broker.client();
    assert_eq!(a.request("USE left"), "USING left");
    assert_eq!(b.request("USE right"), "USING right");
    join(&mut a, "g", None);
    assert_eq!(a.line(), "ASSIGNED g generation:1 partitions:0");
    assert_eq!(
        b.request("JOIN g"),
        "GROUP_PROTOCOL_MISMATCH g shares topic left; a text group reads one topic"
    );
    // Once empty, the group may move to another topic.
    assert_eq!(a.request("LEAVE g"), "LEFT g");
    join(&mut b, "g", None);
    assert_eq!(b.line(), "ASSIGNED g generation:1 partitions:0");
}

#[test]
fn delete_ends_a_topic_for_its_users_and_frees_the_name() {
    let (_tmp, dir) = temp_data_dir();
    let broker = InProcess::start(&dir, &[]);
    let mut c = broker.client();
    assert_eq!(c.request("CREATE gone 2"), "CREATED gone");
    assert_eq!(c.request("USE gone/1"), "USING gone/1");
    assert_eq!(c.request("PRODUCE x"), "ACK offset:0");
    let mut parked = broker.client();
    let mut subscriber = broker.client();
    assert_eq!(parked.request("USE gone/1"), "USING gone/1");
    assert_eq!(subscriber.request("USE gone/1"), "USING gone/1");
    parked.send("FETCH 1 10 60000\n");
    subscriber.send("SUBSCRIBE 0\n");
    assert_eq!(subscriber.line(), "MESSAGE offset:0 x");
    let mut other = broker.client();
    let deadline = Instant::now() + common::TIMEOUT;
    while other.stat("fetches_parked") != 1 {
        assert!(Instant::now() < deadline, "the FETCH never parked");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(other.request("DELETE gone"), "DELETED gone");
    // Waiting readers are told, and the stream ends.
    assert_eq!(
        parked.line(),
        "UNKNOWN_TOPIC this topic was deleted; USE another"
    );
    assert_eq!(
        subscriber.line(),
        "UNKNOWN_TOPIC this topic was deleted; USE another"
    );
    assert_eq!(
        subscriber.request("UNSUBSCRIBE"),
        "INVALID_REQUEST not subscribed"
    );
    assert_eq!(
        c.request("PRODUCE y"),
        "UNKNOWN_TOPIC gone was deleted; USE another topic"
    );
    assert_eq!(
        other.request("DELETE gone"),
        "UNKNOWN_TOPIC gone does not exist"
    );
    assert_eq!(
        other.request("DELETE default"),
        "INVALID_REQUEST the default topic cannot be deleted"
    );
    // The name can be used again, from offset 0.
    assert_eq!(c.request("USE gone"), "USING gone");
    assert_eq!(c.request("PRODUCE z"), "ACK offset:0");
}

/// `--max-groups` bounds both the groups being coordinated and the group
/// names with commits: a flood of new names is refused, the broker's
/// memory stays flat, and other clients are still answered at once.
#[test]
fn group_names_are_bounded_and_a_flood_of_them_costs_nothing() {
    let (_tmp, dir) = temp_data_dir();
    let broker = BrokerProcess::start(&dir, &["--max-groups", "50"]);
    let mut c = broker.client();
    let mut joiner = broker.client();
    // Fill both tables.
    let mut batch = String::new();
    for i in 0..50 {
        batch.push_str(&format!("COMMIT c{i} 0\n"));
    }
    c.send(&batch);
    for i in 0..50 {
        assert_eq!(c.line(), format!("COMMITTED c{i} 0"));
    }
    let mut batch = String::new();
    for i in 0..50 {
        batch.push_str(&format!("JOIN j{i}\n"));
    }
    joiner.send(&batch);
    let mut joined = 0;
    let mut assigned = 0;
    while joined < 50 || assigned < 50 {
        let line = joiner.line();
        if line.starts_with("JOINED j") {
            joined += 1;
        } else if line.starts_with("ASSIGNED j") && line.ends_with(" partitions:0") {
            assigned += 1;
        } else {
            panic!("unexpected {line}");
        }
    }
    let rss_before = broker.rss_kib();
    // 100,000 new names, pipelined, half commits and half joins.
    const FLOOD: usize = 50_000;
    let writer = {
        let mut w = c.writer.try_clone().unwrap();
        let mut j = joiner.writer.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut commits = String::new();
            let mut joins = String::new();
            for i in 0..FLOOD {
                commits.push_str(&format!("COMMIT flood{i} 0\n"));
                joins.push_str(&format!("JOIN flood{i}\n"));
            }
            w.write_all(commits.as_bytes()).unwrap();
            j.write_all(joins.as_bytes()).unwrap();
        })
    };
    let mut bystander = broker.client();
    for _ in 0..FLOOD {
        assert_eq!(
            c.line(),
            "TOO_MANY_GROUPS the broker holds its limit of 50 groups (--max-groups)"
        );
    }
    for _ in 0..FLOOD {
        assert_eq!(
            joiner.line(),
            "TOO_MANY_GROUPS the broker holds its limit of 50 groups (--max-groups)"
        );
    }
    writer.join().unwrap();
    let started = Instant::now();
    assert_eq!(bystander.request("PING"), "PONG");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(bystander.stat("groups"), 50);
    let grown = broker.rss_kib().saturating_sub(rss_before);
    assert!(grown < 4096, "RSS grew by {grown} KiB");
    // Names already known still work.
    assert_eq!(c.request("COMMIT c7 0"), "COMMITTED c7 0");
    join(&mut bystander, "j7", None);
}
