//! `--metrics-addr`: the real broker, scraped with curl, its output parsed
//! by the Prometheus text parser of `prometheus_client` (the project venv,
//! `.ci/run`), with exact values after a known workload; and bad, huge,
//! slow and too many HTTP clients, which get the right status or are
//! closed while the main port keeps answering.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BrokerProcess, Client, TIMEOUT, temp_data_dir};
use kafka_like_broker::server::metrics::{MAX_CONNECTIONS, MAX_HEAD};

/// Whether curl and the venv's prometheus_client are here. If not, says
/// so loudly and the test returns, or fails when `KAFKA_CLIENTS_REQUIRED=1`
/// (`.ci/run` installs both and sets it).
fn have_tools(test: &str) -> bool {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let curl = ok(Command::new("curl").arg("--version"));
    let parser = ok(Command::new(python()).args(["-c", "import prometheus_client"]));
    if curl && parser {
        return true;
    }
    let what = "curl and .venv with prometheus_client";
    if std::env::var("KAFKA_CLIENTS_REQUIRED").as_deref() == Ok("1") {
        panic!("{test}: {what} not installed, and KAFKA_CLIENTS_REQUIRED=1");
    }
    eprintln!("\n*** {test}: SKIPPED ({what} not installed: run .ci/run) ***\n");
    false
}

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// The metrics address the broker logged (`serving metrics addr=...`).
fn metrics_addr(broker: &BrokerProcess) -> SocketAddr {
    let log = broker.stderr();
    let url = log
        .lines()
        .find_map(|l| l.split("serving metrics addr=http://").nth(1))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    url.trim_end_matches("/metrics").parse().expect("address")
}

/// `curl -i` with `args`: (status code, headers, body).
fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    split_response(&String::from_utf8(out.stdout).expect("utf-8 response"))
}

fn split_response(text: &str) -> (u16, String, String) {
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (code, head.to_string(), body.to_string())
}

/// Sends raw bytes to the metrics port and reads until the broker closes.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to the close");
    String::from_utf8(out).expect("utf-8")
}

/// A sample: its name and labels (sorted).
type Key = (String, BTreeMap<String, String>);

/// The output, parsed by prometheus_client: every sample's value, and
/// every family's (type, help).
struct Parsed {
    samples: BTreeMap<Key, f64>,
    families: BTreeMap<String, (String, String)>,
}

impl Parsed {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = (
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
}

const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print("F", f.name, f.type, f.documentation.replace(" ", "_") or "-")
    for s in f.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print("S", s.name, labels or "-", repr(s.value))
"#;

fn parse(text: &str) -> Parsed {
    let mut child = Command::new(python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "prometheus_client could not parse the output: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut parsed = Parsed {
        samples: BTreeMap::new(),
        families: BTreeMap::new(),
    };
    for line in String::from_utf8(out.stdout).expect("utf-8").lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["F", name, kind, help] => {
                parsed
                    .families
                    .insert(name.into(), (kind.into(), help.into()));
            }
            ["S", name, labels, value] => {
                let labels = labels
                    .split(',')
                    .filter(|l| *l != "-")
                    .map(|l| {
                        let (k, v) = l.split_once('=').expect("label=value");
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                let value: f64 = value.parse().expect("a number");
                let old = parsed.samples.insert((name.into(), labels), value);
                assert!(old.is_none(), "a sample twice: {line}");
            }
            _ => panic!("unexpected parser output {line:?}"),
        }
    }
    parsed
}

/// Reads a Kafka response frame (ApiVersions v0) and returns its length.
fn kafka_api_versions(stream: &mut TcpStream) -> usize {
    // size, api_key 18, api_version 0, correlation_id 1, client_id null
    stream
        .write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .expect("write");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("response size");
    let mut body = vec![0; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).expect("response body");
    assert_eq!(&body[..4], &[0, 0, 0, 1], "correlation id");
    body.len()
}

#[test]
fn metrics_after_a_known_workload_are_exact() {
    if !have_tools("metrics_after_a_known_workload_are_exact") {
        return;
    }
    let (_tmp, data) = temp_data_dir();
    let broker = BrokerProcess::start(
        &data,
        &["--metrics-addr", "127.0.0.1:0", "--fsync", "always"],
    );
    let url = format!("http://{}/metrics", metrics_addr(&broker));

    // 3 messages to jobs/0, 5 to jobs/1; billing commits 2 and 5; one
    // FETCH reads the 3 of partition 0.
    let mut a = broker.client();
    assert_eq!(a.request("CREATE jobs 2"), "CREATED jobs");
    assert_eq!(a.request("USE jobs/0"), "USING jobs");
    for i in 0..3 {
        assert_eq!(
            a.request(&format!("PRODUCE a{i}")),
            format!("ACK offset:{i}")
        );
    }
    assert_eq!(a.request("COMMIT billing 2"), "COMMITTED billing 2");
    a.send("FETCH 0 10\n");
    assert_eq!(a.lines_until("END").len(), 4);
    assert_eq!(a.request("USE jobs/1"), "USING jobs/1");
    for i in 0..5 {
        assert_eq!(
            a.request(&format!("PRODUCE b{i}")),
            format!("ACK offset:{i}")
        );
    }
    assert_eq!(a.request("COMMIT billing 5"), "COMMITTED billing 5");
    a.send("TOPICS\n");
    let topics = a.lines_until("END");
    // A text group member: workers, generation 1.
    let mut b = broker.client();
    assert_eq!(b.request("USE jobs"), "USING jobs");
    assert!(
        b.request("JOIN workers")
            .starts_with("JOINED workers member:")
    );
    assert_eq!(b.line(), "ASSIGNED workers generation:1 partitions:0,1");
    // A Kafka connection, and one that has sent nothing yet.
    let mut k = TcpStream::connect(broker.addr).expect("connect");
    k.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    kafka_api_versions(&mut k);
    let _silent = TcpStream::connect(broker.addr).expect("connect");
    // Accepted by the time this is answered (it connected first).
    assert_eq!(a.request("PING"), "PONG");

    let (code, head, body) = curl(&[&url]);
    assert_eq!(code, 200, "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{head}"
    );
    let m = parse(&body);

    // Every family has a type and help; names follow the conventions.
    for (name, (kind, help)) in &m.families {
        assert!(name.starts_with("klb_"), "{name}");
        assert_ne!(kind, "unknown", "{name} has no TYPE");
        assert_ne!(help, "-", "{name} has no HELP");
    }
    for (name, _) in m.samples.keys() {
        let family = m
            .families
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("{name} outside any family"));
        if m.families[family].0 == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
    }

    for (p, end, committed) in [("0", 3.0, 2.0), ("1", 5.0, 5.0)] {
        let part = [("topic", "jobs"), ("partition", p)];
        assert_eq!(m.get("klb_partition_log_start_offset", &part), 0.0);
        assert_eq!(m.get("klb_partition_log_end_offset", &part), end);
        assert_eq!(m.get("klb_partition_segments", &part), 1.0);
        let listed = if p == "0" { "jobs/0" } else { "jobs/1" };
        let bytes: f64 = topics
            .iter()
            .find_map(|l| l.strip_prefix(&format!("TOPIC {listed} first:0 next:{end} bytes:")))
            .unwrap_or_else(|| panic!("{listed} in {topics:?}"))
            .parse()
            .expect("bytes");
        assert_eq!(m.get("klb_partition_size_bytes", &part), bytes);
        let commit = [("group", "billing"), ("topic", "jobs"), ("partition", p)];
        assert_eq!(m.get("klb_group_committed_offset", &commit), committed);
        assert_eq!(m.get("klb_group_lag", &commit), end - committed);
    }
    let default = [("topic", "default"), ("partition", "0")];
    assert_eq!(m.get("klb_partition_log_end_offset", &default), 0.0);
    assert_eq!(m.get("klb_topics", &[]), 2.0);
    // The file budget, as STATS gives it; jobs/0 and jobs/1 were written.
    let limit = a.stat("log_files_limit") as f64;
    assert_eq!(m.get("klb_log_files_limit", &[]), limit);
    let open = m.get("klb_log_files_open", &[]);
    assert!((2.0..=limit).contains(&open), "{open} of {limit}");
    assert_eq!(m.get("klb_log_files_closed_total", &[]), 0.0);
    assert_eq!(m.get("klb_groups", &[]), 1.0);
    assert_eq!(m.get("klb_group_members", &[("group", "workers")]), 1.0);
    assert_eq!(m.get("klb_group_generation", &[("group", "workers")]), 1.0);
    assert_eq!(m.get("klb_messages_produced_total", &[]), 8.0);
    assert_eq!(m.get("klb_messages_consumed_total", &[]), 3.0);
    assert_eq!(m.get("klb_connections", &[("protocol", "text")]), 2.0);
    assert_eq!(m.get("klb_connections", &[("protocol", "kafka")]), 1.0);
    assert_eq!(m.get("klb_connections", &[("protocol", "undecided")]), 1.0);
    assert_eq!(m.get("klb_connections_accepted_total", &[]), 4.0);
    assert_eq!(m.get("klb_connections_rejected_total", &[]), 0.0);
    assert_eq!(m.get("klb_fsync_errors_total", &[]), 0.0);
    assert!(m.get("klb_resident_memory_bytes", &[]) > 0.0);
    assert!(m.get("klb_received_bytes_total", &[]) > 0.0);
    assert_eq!(
        m.get("klb_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );

    // Every fdatasync is timed: the histograms count exactly the
    // fsyncs, each cumulative and ending in +Inf = count.
    let mut timed = 0.0;
    for thread in ["helper", "loop"] {
        let t = [("thread", thread)];
        let count = m.get("klb_fsync_duration_seconds_count", &t);
        let mut last = 0.0;
        for ((name, labels), &v) in &m.samples {
            if name == "klb_fsync_duration_seconds_bucket" && labels["thread"] == thread {
                assert!(v <= count, "{labels:?}");
                if labels["le"] != "+Inf" {
                    let le: f64 = labels["le"].parse().expect("le");
                    assert!(le > 0.0);
                }
                last = f64::max(last, v);
            }
        }
        let inf = [("thread", thread), ("le", "+Inf")];
        assert_eq!(m.get("klb_fsync_duration_seconds_bucket", &inf), count);
        assert_eq!(last, count);
        assert!(m.get("klb_fsync_duration_seconds_sum", &t) >= 0.0);
        timed += count;
    }
    let fsyncs = m.get("klb_fsyncs_total", &[]);
    assert!(fsyncs >= 1.0, "--fsync always synced nothing");
    assert_eq!(timed, fsyncs);

    // The STATS counters say the same.
    assert_eq!(a.stat("messages_produced"), 8);
    assert_eq!(a.stat("topic.jobs/1.next_offset"), 5);

    // HEAD: the same headers, no body; HTTP/1.0 works too.
    let (code, head, body) = curl(&["-I", &url]);
    assert_eq!((code, body.as_str()), (200, ""), "{head}");
    let http10 = raw(
        metrics_addr(&broker),
        b"GET /metrics HTTP/1.0\r\nUser-Agent: test\r\n\r\n",
    );
    let (code, head, body) = split_response(&http10);
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert!(body.starts_with("# HELP klb_"), "{body}");
    drop(k);
}

#[test]
fn bad_requests_get_their_status() {
    if !have_tools("bad_requests_get_their_status") {
        return;
    }
    let (_tmp, data) = temp_data_dir();
    let broker = BrokerProcess::start(&data, &["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_addr(&broker);
    let url = format!("http://{addr}/metrics");

    let (code, head, body) = curl(&["-X", "POST", &url]);
    assert_eq!(code, 405, "{head}");
    assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");
    assert_eq!(body, "405 Method Not Allowed\n");
    let (code, _, body) = curl(&[&format!("http://{addr}/metric")]);
    assert_eq!((code, body.as_str()), (404, "404 Not Found\n"));
    let (code, _, _) = curl(&[&format!("http://{addr}/")]);
    assert_eq!(code, 404);
    let big = format!("X-Big: {}", "a".repeat(MAX_HEAD));
    let (code, _, body) = curl(&["-H", &big, &url]);
    assert_eq!(
        (code, body.as_str()),
        (431, "431 Request Header Fields Too Large\n")
    );
    // Not HTTP, no Host in 1.1, another version.
    for (request, status) in [
        (&b"PING\r\n\r\n"[..], "400 Bad Request"),
        (b"GET /metrics HTTP/1.1\r\n\r\n", "400 Bad Request"),
        (
            b"GET /metrics HTTP/2.0\r\n\r\n",
            "505 HTTP Version Not Supported",
        ),
    ] {
        let reply = raw(addr, request);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{request:?}: {reply}"
        );
    }
    // A huge request: answered 431 after MAX_HEAD bytes, then closed
    // (the rest is read and dropped, not kept).
    let mut flood = b"GET /metrics HTTP/1.1\r\nX-Flood: ".to_vec();
    flood.resize(64 * 1024, b'a');
    let reply = raw(addr, &flood);
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    let mut client = Client::connect(broker.addr);
    assert_eq!(client.request("PING"), "PONG");
}

#[test]
fn slow_clients_are_closed_and_their_number_bounded() {
    if !have_tools("slow_clients_are_closed_and_their_number_bounded") {
        return;
    }
    let (_tmp, data) = temp_data_dir();
    let timeout = Duration::from_millis(1000);
    let broker = BrokerProcess::start(
        &data,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--request-timeout-ms",
            &timeout.as_millis().to_string(),
        ],
    );
    let addr = metrics_addr(&broker);
    let url = format!("http://{addr}/metrics");

    // Slow clients fill the metrics connections: one more is turned away,
    // and the main port answers meanwhile.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|i| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            if i % 2 == 0 {
                // Half a request, never finished.
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .expect("write");
            }
            s
        })
        .collect();
    let turned_away = raw(addr, b"");
    assert!(
        turned_away.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{turned_away}"
    );
    let mut client = Client::connect(broker.addr);
    assert_eq!(client.request("PING"), "PONG");
    // (Else the slow clients may be gone already, and this proves less.)
    assert!(started.elapsed() < timeout, "the test itself was too slow");
    // Each slow one is answered 408 and closed at the request timeout.
    for s in &mut slow {
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read to the close");
        assert!(
            reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{reply}"
        );
    }
    let waited = started.elapsed();
    assert!(waited >= timeout, "closed after {waited:?}");
    assert_eq!(client.request("PING"), "PONG");
    // Their slots are free again.
    let (code, _, body) = curl(&[&url]);
    assert_eq!(code, 200);
    assert!(
        body.contains("\nklb_connections{protocol=\"text\"} 1\n"),
        "{body}"
    );
}

#[test]
fn a_bad_metrics_address_is_refused() {
    let out = common::run_expecting_refusal(&["--metrics-addr".as_ref(), "localhost".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "broker: --metrics-addr: invalid value \"localhost\": give a port: HOST:PORT or PORT\n"
        ),
        "{err}"
    );
}

#[test]
fn a_bare_port_means_localhost() {
    let parse = |v: &str| {
        kafka_like_broker::config::parse_args(["--metrics-addr", v])
            .expect("valid")
            .expect("a config")
            .metrics_addr
    };
    assert_eq!(parse("9100").as_deref(), Some("localhost:9100"));
    assert_eq!(parse("0.0.0.0:9100").as_deref(), Some("0.0.0.0:9100"));
    assert_eq!(parse("[::1]:9100").as_deref(), Some("[::1]:9100"));
}
