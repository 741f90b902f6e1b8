//! Consumer groups with real Kafka clients (issue 10): confluent-kafka,
//! kafka-python and kafkajs members subscribed to a 4-partition topic, and
//! kcat -G. Each member is a script from tests/kafka (`group` command)
//! that prints its assignments, its records and its commits as JSON lines
//! and leaves the group on `close`.
//!
//! Ignored until consumer groups land in this branch ("needs consumer
//! groups (issue 10)"): run them with `cargo test --test kafka_groups --
//! --ignored`, against another broker build with `KAFKA_TEST_BROKER=PATH`.

mod common;
mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{BrokerProcess, temp_data_dir};
use kafka_support::{Json, Live, Rec, Tool, bootstrap, ck, have, kcat, obj, script, start_broker};

/// The group members' session timeout.
const SESSION_TIMEOUT_MS: i64 = 6000;
/// How long a member may take to join, rebalance or catch up.
const WAIT: Duration = Duration::from_secs(30);
const PARTITIONS: i64 = 4;
const ALL: [i64; 4] = [0, 1, 2, 3];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Confluent,
    KafkaPython,
    Kafkajs,
}

impl Client {
    fn tools(self) -> Vec<Tool> {
        match self {
            // Python creates the topic and produces in every test.
            Client::Kafkajs => vec![Tool::Python, Tool::Kafkajs],
            _ => vec![Tool::Python],
        }
    }

    fn script(self) -> &'static str {
        match self {
            Client::Confluent => "ck.py",
            Client::KafkaPython => "kp.py",
            Client::Kafkajs => "kjs.js",
        }
    }
}

/// One group member: its process and what it printed, parsed as it comes.
struct Member {
    name: String,
    live: Live,
    parsed: usize,
    records: Vec<Rec>,
    assignments: Vec<Vec<i64>>,
    /// The latest committed offset (the next to read) per partition.
    committed: BTreeMap<i64, i64>,
    closed: bool,
}

impl Member {
    fn start(client: Client, name: &str, b: &str, group: &str, topic: &str) -> Member {
        let args = obj([
            ("bootstrap", b.into()),
            ("group", group.into()),
            ("topic", topic.into()),
            ("session_timeout_ms", SESSION_TIMEOUT_MS.into()),
            ("max_s", 100.into()),
        ]);
        Member {
            name: name.to_string(),
            live: Live::spawn(name, script(client.script(), "group", &args)),
            parsed: 0,
            records: Vec::new(),
            assignments: Vec::new(),
            committed: BTreeMap::new(),
            closed: false,
        }
    }

    /// Takes in whatever the member printed since the last call.
    fn pump(&mut self) {
        self.live.drain_now();
        for line in &self.live.seen[self.parsed..] {
            let Ok(j) = Json::parse(line) else { continue };
            if j.has("record") {
                self.records.push(Rec::from_json(j.get("record")));
            } else if j.has("assigned") {
                self.assignments
                    .push(j.get("assigned").arr().iter().map(Json::i64).collect());
            } else if j.has("committed") {
                // confluent-kafka lists partitions it had nothing new
                // for with -1001 (no offset).
                for pair in j.get("committed").arr() {
                    let (p, offset) = (pair.arr()[0].i64(), pair.arr()[1].i64());
                    if offset >= 0 {
                        let c = self.committed.entry(p).or_insert(offset);
                        *c = (*c).max(offset);
                    }
                }
            } else if j.has("closed") {
                self.closed = true;
            }
        }
        self.parsed = self.live.seen.len();
    }

    /// Whether everything this member read is committed: a member killed
    /// before its commit lands rightly has its records read again.
    fn all_committed(&self) -> bool {
        let mut read: BTreeMap<i64, i64> = BTreeMap::new();
        for r in &self.records {
            let next = read.entry(r.partition).or_default();
            *next = (*next).max(r.offset + 1);
        }
        read.iter()
            .all(|(p, next)| self.committed.get(p).is_some_and(|c| c >= next))
    }

    fn assignment(&self) -> Vec<i64> {
        self.assignments.last().cloned().unwrap_or_default()
    }

    fn values_since(&self, from: usize) -> Vec<String> {
        self.records[from..]
            .iter()
            .map(|r| r.value.clone())
            .collect()
    }

    fn dump(&self) -> String {
        let tail: Vec<&String> = self.live.seen.iter().rev().take(30).collect();
        format!(
            "{}: {} records, assignments {:?}, last lines (newest first):\n{}",
            self.name,
            self.records.len(),
            self.assignments,
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Says `close` and waits for the member to leave and exit.
    fn close(&mut self) {
        self.live.say("close");
        let status = self.live.wait(WAIT);
        self.pump();
        assert!(status.success(), "{} exited {status:?}", self.name);
        assert!(self.closed, "{} did not report closing", self.dump());
    }
}

/// Polls the members (every 20 ms) until `done` holds, failing after
/// `timeout` with what each saw.
fn wait_until(
    members: &mut [&mut Member],
    timeout: Duration,
    what: &str,
    done: impl Fn(&[&mut Member]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        for m in members.iter_mut() {
            m.pump();
        }
        if done(members) {
            return;
        }
        if Instant::now() > deadline {
            let dumps: Vec<String> = members.iter().map(|m| m.dump()).collect();
            panic!("{what}: not within {timeout:?}\n{}", dumps.join("\n\n"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the members' latest assignments are non-empty, disjoint and
/// together cover every partition.
fn wait_split(members: &mut [&mut Member]) {
    wait_until(members, WAIT, "a split of all partitions", |ms| {
        let mut all = Vec::new();
        for m in ms {
            let a = m.assignment();
            if a.is_empty() {
                return false;
            }
            all.extend(a);
        }
        all.sort();
        all == ALL
    });
}

fn create_topic(b: &str, topic: &str) {
    let out = ck(
        "create_topics",
        &obj([
            ("bootstrap", b.into()),
            (
                "topics",
                Json::Arr(vec![obj([
                    ("name", topic.into()),
                    ("partitions", PARTITIONS.into()),
                ])]),
            ),
        ]),
    );
    assert!(out.one("created").get("error").is_null(), "{out}");
}

/// Produces `m-<i>` for `i` in `range`, record `i` to partition `i % 4`;
/// returns the values.
fn produce(b: &str, topic: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let values: Vec<String> = range.clone().map(|i| format!("m-{i}")).collect();
    let out = ck(
        "produce",
        &obj([
            ("bootstrap", b.into()),
            ("topic", topic.into()),
            (
                "generate",
                obj([
                    ("start", range.start.into()),
                    ("end", range.end.into()),
                    ("partitions", PARTITIONS.into()),
                ]),
            ),
            ("config", obj([("linger.ms", 20.into())])),
        ]),
    );
    let delivered = out.of("delivered");
    assert_eq!(delivered.len(), values.len(), "{out}");
    assert!(delivered.iter().all(|d| d.get("error").is_null()), "{out}");
    values
}

/// Asserts `got` holds each of `want` exactly once (in any order) and
/// nothing else.
fn assert_exactly_once(got: &[String], want: &[String], what: &str) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in got {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let dups: Vec<(&str, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, n)| (*v, *n))
        .take(10)
        .collect();
    assert!(dups.is_empty(), "{what}: read more than once: {dups:?}");
    let got_set: BTreeSet<&str> = counts.keys().copied().collect();
    let want_set: BTreeSet<&str> = want.iter().map(String::as_str).collect();
    let missing: Vec<&&str> = want_set.difference(&got_set).take(10).collect();
    let extra: Vec<&&str> = got_set.difference(&want_set).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} of {} read; missing {missing:?}, unexpected {extra:?}",
        got_set.len(),
        want_set.len()
    );
}

fn total(members: &[&mut Member]) -> usize {
    members.iter().map(|m| m.records.len()).sum()
}

/// Two members split the partitions and read 4,000 messages exactly once;
/// one closes, the other takes all partitions and reads the next 1,000;
/// it closes; a new member resumes from the commits and reads only the
/// 500 produced after.
fn share_the_work(client: Client) {
    let test = format!("{client:?} group: share the work");
    if !have(&test, &client.tools()) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let (group, topic) = ("g-share", "shared");
    create_topic(&b, topic);
    let mut a = Member::start(client, "member A", &b, group, topic);
    let mut c = Member::start(client, "member B", &b, group, topic);
    wait_split(&mut [&mut a, &mut c]);

    let first = produce(&b, topic, 0..4000);
    wait_until(&mut [&mut a, &mut c], WAIT, "4,000 read", |ms| {
        total(ms) >= first.len()
    });
    let both: Vec<String> = a
        .values_since(0)
        .into_iter()
        .chain(c.values_since(0))
        .collect();
    assert_exactly_once(&both, &first, "A and B together");
    // Each read only its own partitions, and both had some.
    let (pa, pb) = (a.assignment(), c.assignment());
    assert!(
        !pa.is_empty() && !pb.is_empty(),
        "{}\n{}",
        a.dump(),
        c.dump()
    );
    assert!(
        pa.iter().all(|p| !pb.contains(p)),
        "overlapping assignments {pa:?} {pb:?}"
    );
    for (m, parts) in [(&a, &pa), (&c, &pb)] {
        let read: BTreeSet<i64> = m.records.iter().map(|r| r.partition).collect();
        assert_eq!(read, parts.iter().copied().collect(), "{}", m.dump());
    }

    // A leaves; B gets every partition and all of the next 1,000.
    a.close();
    let b_before = c.records.len();
    wait_until(&mut [&mut c], WAIT, "B assigned every partition", |ms| {
        ms[0].assignment() == ALL
    });
    let second = produce(&b, topic, 4000..5000);
    wait_until(&mut [&mut c], WAIT, "B reads the next 1,000", |ms| {
        ms[0].records.len() >= b_before + second.len()
    });
    assert_exactly_once(&c.values_since(b_before), &second, "B after A left");

    // Everyone gone: a new member resumes from the committed offsets.
    c.close();
    let third = produce(&b, topic, 5000..5500);
    let mut d = Member::start(client, "member C", &b, group, topic);
    wait_until(&mut [&mut d], WAIT, "C reads the 500 new", |ms| {
        ms[0].records.len() >= third.len() && ms[0].assignment() == ALL
    });
    d.close();
    assert_exactly_once(&d.values_since(0), &third, "C after everyone closed");
}

/// A member killed with SIGKILL is expired after the session timeout: the
/// other gets its partitions and every message produced after the kill.
fn expire_a_killed_member(client: Client) {
    let test = format!("{client:?} group: SIGKILL");
    if !have(&test, &client.tools()) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    let (group, topic) = ("g-kill", "killed");
    create_topic(&b, topic);
    let mut a = Member::start(client, "member A", &b, group, topic);
    let mut victim = Member::start(client, "member B", &b, group, topic);
    wait_split(&mut [&mut a, &mut victim]);
    let first = produce(&b, topic, 0..400);
    wait_until(
        &mut [&mut a, &mut victim],
        WAIT,
        "400 read and committed",
        |ms| total(ms) >= first.len() && ms.iter().all(|m| m.all_committed()),
    );

    let killed_at = Instant::now();
    victim.live.kill9();
    let a_before = a.records.len();
    let second = produce(&b, topic, 400..800);
    // Within the session timeout plus a rebalance, A owns everything.
    wait_until(
        &mut [&mut a],
        Duration::from_millis(SESSION_TIMEOUT_MS as u64) + WAIT,
        "A assigned every partition after B's session timed out",
        |ms| ms[0].assignment() == ALL,
    );
    let took = killed_at.elapsed();
    wait_until(
        &mut [&mut a],
        WAIT,
        "A reads what was produced after the kill",
        |ms| {
            let got: BTreeSet<String> = ms[0].values_since(a_before).into_iter().collect();
            second.iter().all(|v| got.contains(v))
        },
    );
    // B's records were committed before it was killed (it was idle), so A
    // re-reads nothing of the first 400.
    assert_exactly_once(&a.values_since(a_before), &second, "A after B was killed");
    eprintln!("{client:?}: the killed member's partitions moved after {took:?}");
    a.close();
}

/// Members of a group across a broker restart (same port and data dir):
/// they rejoin and resume from the committed offsets, reading the messages
/// produced after the restart exactly once and nothing before it again.
fn survive_a_broker_restart(client: Client) {
    let test = format!("{client:?} group: broker restart");
    if !have(&test, &client.tools()) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let mut broker = start_broker(&dir, &[]);
    let addr = broker.addr;
    let b = bootstrap(&broker);
    let (group, topic) = ("g-restart", "restarted");
    create_topic(&b, topic);
    let mut a = Member::start(client, "member A", &b, group, topic);
    let mut c = Member::start(client, "member B", &b, group, topic);
    wait_split(&mut [&mut a, &mut c]);
    let first = produce(&b, topic, 0..2000);
    wait_until(
        &mut [&mut a, &mut c],
        WAIT,
        "2,000 read and committed",
        |ms| total(ms) >= first.len() && ms.iter().all(|m| m.all_committed()),
    );
    let (a_before, c_before) = (a.records.len(), c.records.len());
    let rounds = (a.assignments.len(), c.assignments.len());

    let (status, _) = broker.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}");
    let broker = restart_on(&dir, addr);
    assert_eq!(bootstrap(&broker), b);
    // The restarted broker knows no members: both rejoin (a new
    // assignment each) and split the partitions again. Records read while
    // that settles may rightly be read twice (at-least-once: a commit is
    // refused once a rebalance has begun), so the new records come after.
    wait_until(
        &mut [&mut a, &mut c],
        Duration::from_millis(SESSION_TIMEOUT_MS as u64) + WAIT,
        "both members assigned again after the restart",
        |ms| ms[0].assignments.len() > rounds.0 && ms[1].assignments.len() > rounds.1,
    );
    wait_split(&mut [&mut a, &mut c]);
    let second = produce(&b, topic, 2000..3000);
    wait_until(
        &mut [&mut a, &mut c],
        Duration::from_millis(SESSION_TIMEOUT_MS as u64) + WAIT,
        "1,000 read after the restart",
        |ms| {
            let got: BTreeSet<String> = ms[0]
                .values_since(a_before)
                .into_iter()
                .chain(ms[1].values_since(c_before))
                .collect();
            second.iter().all(|v| got.contains(v))
        },
    );
    let after: Vec<String> = a
        .values_since(a_before)
        .into_iter()
        .chain(c.values_since(c_before))
        .collect();
    assert_exactly_once(&after, &second, "A and B after the restart");
    wait_split(&mut [&mut a, &mut c]);
    a.close();
    c.close();
}

/// Starts the broker again on `addr`: the clients know only that address.
fn restart_on(dir: &Path, addr: SocketAddr) -> BrokerProcess {
    let bin = std::env::var_os("KAFKA_TEST_BROKER")
        .map_or_else(|| common::BROKER.into(), std::path::PathBuf::from);
    let mut command = Command::new(bin);
    command
        .args(["--addr", &addr.to_string(), "--data-dir"])
        .arg(dir);
    BrokerProcess::spawn(command, dir)
}

#[test]
fn confluent_kafka_members_share_the_work_and_resume_from_commits() {
    share_the_work(Client::Confluent);
}

#[test]
fn kafka_python_members_share_the_work_and_resume_from_commits() {
    share_the_work(Client::KafkaPython);
}

#[test]
fn kafkajs_members_share_the_work_and_resume_from_commits() {
    share_the_work(Client::Kafkajs);
}

#[test]
fn confluent_kafka_member_killed_with_sigkill_is_expired_after_its_session_timeout() {
    expire_a_killed_member(Client::Confluent);
}

#[test]
fn kafka_python_member_killed_with_sigkill_is_expired_after_its_session_timeout() {
    expire_a_killed_member(Client::KafkaPython);
}

#[test]
fn kafkajs_member_killed_with_sigkill_is_expired_after_its_session_timeout() {
    expire_a_killed_member(Client::Kafkajs);
}

#[test]
fn confluent_kafka_members_rejoin_after_a_broker_restart_and_resume_from_commits() {
    survive_a_broker_restart(Client::Confluent);
}

#[test]
fn kafka_python_members_rejoin_after_a_broker_restart_and_resume_from_commits() {
    survive_a_broker_restart(Client::KafkaPython);
}

#[test]
fn kafkajs_members_rejoin_after_a_broker_restart_and_resume_from_commits() {
    survive_a_broker_restart(Client::Kafkajs);
}

/// `kcat -G group topic`: the balanced consumer reads everything once,
/// commits on exit, and a second run of the same group reads only what
/// was produced since.
#[test]
fn kcat_balanced_consumer_reads_everything_then_only_what_is_new() {
    if !have("kcat -G", &[Tool::Python, Tool::Kcat]) {
        return;
    }
    let (_tmp, dir) = temp_data_dir();
    let broker = start_broker(&dir, &[]);
    let b = bootstrap(&broker);
    create_topic(&b, "kcat-g");
    let run = || {
        let out = kcat(
            &[
                "-b",
                &b,
                "-G",
                "kcat-group",
                "kcat-g",
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                &format!("session.timeout.ms={SESSION_TIMEOUT_MS}"),
                "-e",
                "-q",
                "-f",
                "%p %o %s\\n",
            ],
            b"",
        );
        out.stdout
            .lines()
            .map(|l| l.splitn(3, ' ').nth(2).unwrap_or_default().to_string())
            .collect::<Vec<String>>()
    };
    let first = produce(&b, "kcat-g", 0..400);
    assert_exactly_once(&run(), &first, "kcat -G, first run");
    let second = produce(&b, "kcat-g", 400..500);
    assert_exactly_once(&run(), &second, "kcat -G, second run");
    assert_eq!(run(), Vec::<String>::new(), "kcat -G, nothing new");
}
