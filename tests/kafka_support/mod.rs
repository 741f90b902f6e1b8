//! Support for the tests that drive real Kafka clients (confluent-kafka,
//! kafka-python, kafkajs, kcat) against the real broker binary: finding the
//! clients `.ci/run` installs, running their scripts in `tests/kafka/`
//! with a timeout, and reading what they print (one JSON object a line).
//!
//! No serde here (the crate's dev-dependencies are not ours to change), so
//! a small JSON reader and writer is included: the scripts print only
//! objects, arrays, strings, integers, booleans and null.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{self, BrokerProcess, Client};

/// How long one client run may take before it is killed and the test fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- JSON

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at {} in {text:?}", p.i));
        }
        Ok(v)
    }

    /// The member `key` of an object, or `Null` if absent.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(members) => members
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&Json::Null, |(_, v)| v),
            _ => &Json::Null,
        }
    }

    pub fn has(&self, key: &str) -> bool {
        matches!(self, Json::Obj(m) if m.iter().any(|(k, _)| k == key))
    }

    pub fn i64(&self) -> i64 {
        match self {
            Json::Int(n) => *n,
            other => panic!("expected an integer, got {other}"),
        }
    }

    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a string, got {other}"),
        }
    }

    /// A string, or `None` for null.
    pub fn opt_str(&self) -> Option<String> {
        match self {
            Json::Null => None,
            other => Some(other.str().to_string()),
        }
    }

    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            other => panic!("expected an array, got {other}"),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(n) => write!(f, "{n}"),
            Json::Float(x) => write!(f, "{x}"),
            Json::Str(s) => {
                f.write_char('"')?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                        c => f.write_char(c)?,
                    }
                }
                f.write_char('"')
            }
            Json::Arr(items) => {
                f.write_char('[')?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(']')
            }
            Json::Obj(members) => {
                f.write_char('{')?;
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{}:{v}", Json::Str(k.clone()))?;
                }
                f.write_char('}')
            }
        }
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_string())
    }
}
impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}
impl From<&String> for Json {
    fn from(s: &String) -> Json {
        Json::Str(s.clone())
    }
}
impl From<i64> for Json {
    fn from(n: i64) -> Json {
        Json::Int(n)
    }
}
impl From<u64> for Json {
    fn from(n: u64) -> Json {
        Json::Int(n as i64)
    }
}
impl From<i32> for Json {
    fn from(n: i32) -> Json {
        Json::Int(n.into())
    }
}
impl From<usize> for Json {
    fn from(n: usize) -> Json {
        Json::Int(n as i64)
    }
}
impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Json {
        v.map_or(Json::Null, Into::into)
    }
}
impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(v: Vec<T>) -> Json {
        Json::Arr(v.into_iter().map(Into::into).collect())
    }
}

/// An object from `(key, value)` pairs: `obj([("topic", "t".into())])`.
pub fn obj<const N: usize>(members: [(&str, Json); N]) -> Json {
    Json::Obj(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit} at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value()?;
                    members.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(_) => self.number(),
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Json::Int(n));
        }
        text.parse::<f64>()
            .map(Json::Float)
            .map_err(|_| format!("bad number {text:?} at {start}"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = std::str::from_utf8(self.s.get(self.i..self.i + 4).ok_or("short \\u")?)
            .map_err(|e| e.to_string())?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                self.eat("\\u")?;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or("bad \\u escape")?
                        }
                        _ => return Err(format!("bad escape \\{}", e as char)),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
    }
}

// ---------------------------------------------------------------- clients

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the client scripts live.
pub fn scripts_dir() -> PathBuf {
    root().join("tests/kafka")
}

/// The clients a test may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// The project venv's python with confluent-kafka and kafka-python.
    Python,
    /// node with tests/kafka/node_modules/kafkajs.
    Kafkajs,
    Kcat,
}

fn found(tool: Tool) -> bool {
    static PYTHON: OnceLock<bool> = OnceLock::new();
    static KAFKAJS: OnceLock<bool> = OnceLock::new();
    static KCAT: OnceLock<bool> = OnceLock::new();
    let quietly = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match tool {
        Tool::Python => *PYTHON.get_or_init(|| {
            python_path().exists()
                && quietly(Command::new(python_path()).args([
                    "-c",
                    "import confluent_kafka, kafka, snappy, lz4, zstandard",
                ]))
        }),
        Tool::Kafkajs => *KAFKAJS.get_or_init(|| {
            scripts_dir()
                .join("node_modules/kafkajs/package.json")
                .exists()
                && quietly(Command::new("node").arg("--version"))
        }),
        Tool::Kcat => *KCAT.get_or_init(|| quietly(Command::new("kcat").arg("-V"))),
    }
}

/// Whether all `tools` are installed. If not, says so loudly on stderr
/// (the test then returns), or fails when `KAFKA_CLIENTS_REQUIRED=1`
/// (set by `.ci/run`, which installs them, so that CI cannot pass by
/// skipping).
pub fn have(test: &str, tools: &[Tool]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|t| !found(**t))
        .map(|t| match t {
            Tool::Python => "python venv .venv with confluent-kafka/kafka-python",
            Tool::Kafkajs => "node + tests/kafka/node_modules/kafkajs",
            Tool::Kcat => "kcat",
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var("KAFKA_CLIENTS_REQUIRED").as_deref() == Ok("1") {
        panic!("{test}: {what} not installed, and KAFKA_CLIENTS_REQUIRED=1");
    }
    eprintln!("\n*** {test}: SKIPPED ({what} not installed: run .ci/run) ***\n");
    false
}

pub fn python_path() -> PathBuf {
    root().join(".venv/bin/python")
}

/// A command for one of the scripts in tests/kafka: `ck.py`, `kp.py`,
/// `kp_wire.py` (python) or `kjs.js` (node), with the command and its
/// JSON arguments.
pub fn script(name: &str, command: &str, args: &Json) -> Command {
    let mut cmd = if name.ends_with(".js") {
        let mut c = Command::new("node");
        c.env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
        c
    } else {
        let mut c = Command::new(python_path());
        c.env("PYTHONUNBUFFERED", "1");
        c
    };
    cmd.current_dir(scripts_dir())
        .arg(name)
        .arg(command)
        .arg(args.to_string());
    cmd
}

/// What a finished client run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// stdout as JSON lines.
    pub fn json(&self) -> Vec<Json> {
        self.stdout
            .lines()
            .map(|l| Json::parse(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}\n{self}")))
            .collect()
    }

    /// The values of every line `{"<kind>": value}`.
    pub fn of(&self, kind: &str) -> Vec<Json> {
        self.json()
            .into_iter()
            .filter(|j| j.has(kind))
            .map(|j| j.get(kind).clone())
            .collect()
    }

    /// The one line of `kind`.
    pub fn one(&self, kind: &str) -> Json {
        let all = self.of(kind);
        assert_eq!(all.len(), 1, "expected one {kind:?} line:\n{self}");
        all.into_iter().next().unwrap()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?} after {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion with `stdin` as its input, killing it (and
/// failing) after [`CLIENT_TIMEOUT`].
pub fn run(cmd: Command, stdin: &[u8]) -> Output {
    run_with_timeout(cmd, stdin, CLIENT_TIMEOUT)
}

pub fn run_with_timeout(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    let started = Instant::now();
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {description}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let out = Output {
        status: status.unwrap_or_default(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        elapsed: started.elapsed(),
    };
    if status.is_none() {
        panic!("{description} did not finish in {timeout:?}: killed\n{out}");
    }
    out
}

fn drain(mut source: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs a script command and fails unless it exits 0.
pub fn run_script(name: &str, command: &str, args: &Json) -> Output {
    let out = run(script(name, command, args), b"");
    assert!(
        out.status.success(),
        "{name} {command} {args} failed:\n{out}"
    );
    out
}

/// confluent-kafka: `tests/kafka/ck.py`.
pub fn ck(command: &str, args: &Json) -> Output {
    run_script("ck.py", command, args)
}

/// kafka-python: `tests/kafka/kp.py`.
pub fn kp(command: &str, args: &Json) -> Output {
    run_script("kp.py", command, args)
}

/// kafka-python's protocol classes over a socket: `tests/kafka/kp_wire.py`.
pub fn kp_wire(command: &str, args: &Json) -> Output {
    run_script("kp_wire.py", command, args)
}

/// kafkajs: `tests/kafka/kjs.js`.
pub fn kjs(command: &str, args: &Json) -> Output {
    run_script("kjs.js", command, args)
}

/// kcat with `args`, fed `stdin`; fails unless it exits 0.
pub fn kcat(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("kcat");
    cmd.args(args);
    let out = run(cmd, stdin);
    assert!(out.status.success(), "kcat {args:?} failed:\n{out}");
    out
}

/// A client process that keeps running while the test watches its output
/// line by line (and may write to its stdin); killed when dropped.
pub struct Live {
    pub child: Child,
    pub name: String,
    lines: mpsc::Receiver<String>,
    /// Every line received so far.
    pub seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
    stdin: Option<std::process::ChildStdin>,
    started: Instant,
}

impl Live {
    pub fn spawn(name: &str, mut cmd: Command) -> Live {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(drain(child.stderr.take().unwrap()));
        let stdin = child.stdin.take();
        Live {
            child,
            name: name.to_string(),
            lines: rx,
            seen: Vec::new(),
            stderr,
            stdin,
            started: Instant::now(),
        }
    }

    /// Sends one line to the process's stdin.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the client's stdin");
        stdin.flush().expect("flush");
    }

    /// Closes the process's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for a JSON line with `kind` whose value
    /// satisfies `accept`; returns it. Fails with everything seen if none
    /// comes.
    pub fn expect(
        &mut self,
        kind: &str,
        timeout: Duration,
        accept: impl Fn(&Json) -> bool,
    ) -> Json {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(j) = Json::parse(&line)
                        && j.has(kind)
                        && accept(j.get(kind))
                    {
                        return j.get(kind).clone();
                    }
                }
                Err(_) => {
                    let stderr = self.stderr_so_far();
                    panic!(
                        "{}: no {kind:?} line accepted within {timeout:?}; saw:\n{}\n--- stderr:\n{stderr}",
                        self.name,
                        self.seen.join("\n"),
                    )
                }
            }
        }
    }

    /// Takes every line that arrived so far without waiting.
    pub fn drain_now(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits for the process to exit by itself (failing after `timeout`),
    /// then collects the rest of its output.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; saw:\n{}",
                self.name,
                self.seen.join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status
    }

    /// The values of every JSON line `{"<kind>": value}` seen so far.
    pub fn of(&self, kind: &str) -> Vec<Json> {
        self.seen
            .iter()
            .filter_map(|l| Json::parse(l).ok())
            .filter(|j| j.has(kind))
            .map(|j| j.get(kind).clone())
            .collect()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (by pid).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// stderr so far is only available after exit; before, a note.
    fn stderr_so_far(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_some()
            && let Some(h) = self.stderr.take()
        {
            return h.join().unwrap_or_default();
        }
        format!("(still running for {:?})", self.started.elapsed())
    }

    pub fn stderr(&mut self) -> String {
        self.stderr_so_far()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- broker

/// Starts the broker on `127.0.0.1:0` with `args`. `KAFKA_TEST_BROKER`
/// may name another broker binary (e.g. a build with consumer groups for
/// tests/kafka_groups.rs); the default is this crate's.
pub fn start_broker(dir: &Path, args: &[&str]) -> BrokerProcess {
    let bin = std::env::var_os("KAFKA_TEST_BROKER")
        .map_or_else(|| PathBuf::from(common::BROKER), PathBuf::from);
    let mut command = Command::new(bin);
    command
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args);
    BrokerProcess::spawn(command, dir)
}

pub fn bootstrap(broker: &BrokerProcess) -> String {
    broker.addr.to_string()
}

/// One record as a client reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub partition: i64,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
    pub timestamp: i64,
}

impl Rec {
    pub fn from_json(j: &Json) -> Rec {
        Rec {
            partition: j.get("partition").i64(),
            offset: j.get("offset").i64(),
            key: j.get("key").opt_str(),
            value: j.get("value").str().to_string(),
            headers: j
                .get("headers")
                .arr()
                .iter()
                .map(|h| (h.arr()[0].str().to_string(), h.arr()[1].str().to_string()))
                .collect(),
            timestamp: j.get("timestamp").i64(),
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone)]
pub struct NewRec {
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
    pub timestamp: Option<i64>,
    pub partition: Option<i64>,
}

impl NewRec {
    pub fn value(v: &str) -> NewRec {
        NewRec {
            key: None,
            value: v.to_string(),
            headers: Vec::new(),
            timestamp: None,
            partition: None,
        }
    }

    pub fn to_json(&self) -> Json {
        obj([
            ("key", self.key.clone().into()),
            ("value", self.value.clone().into()),
            (
                "headers",
                Json::Arr(
                    self.headers
                        .iter()
                        .map(|(k, v)| Json::Arr(vec![k.into(), v.into()]))
                        .collect(),
                ),
            ),
            ("timestamp", self.timestamp.into()),
            ("partition", self.partition.into()),
        ])
    }
}

pub fn records_json(records: &[NewRec]) -> Json {
    Json::Arr(records.iter().map(NewRec::to_json).collect())
}

/// The records a script printed (`{"record": ...}` lines), in print order.
pub fn records(out: &Output) -> Vec<Rec> {
    out.of("record").iter().map(Rec::from_json).collect()
}

/// `{"watermarks": ...}` lines as partition → (low, high).
pub fn watermarks(out: &Output) -> BTreeMap<i64, (i64, i64)> {
    out.of("watermarks")
        .iter()
        .map(|w| {
            (
                w.get("partition").i64(),
                (w.get("low").i64(), w.get("high").i64()),
            )
        })
        .collect()
}

/// Reads a topic's partition over the text protocol: `USE topic[/p]`
/// then `FETCH <next> max` until a reply carries no message (a reply may
/// stop early: at `--max-output-bytes`, or at a segment's end); returns
/// (offset, value bytes) with `MESSAGE64` lines decoded, and the last
/// `END` offset.
pub fn text_fetch(broker: &BrokerProcess, topic: &str, max: usize) -> (Vec<(u64, Vec<u8>)>, u64) {
    let mut c = broker.client();
    text_fetch_with(&mut c, topic, max)
}

pub fn text_fetch_with(c: &mut Client, topic: &str, max: usize) -> (Vec<(u64, Vec<u8>)>, u64) {
    assert_eq!(c.request(&format!("USE {topic}")), format!("USING {topic}"));
    let mut messages = Vec::new();
    let mut next = 0;
    loop {
        let (batch, end) = fetch_once(c, next, max - messages.len());
        let done = batch.is_empty() || messages.len() + batch.len() >= max;
        messages.extend(batch);
        next = end;
        if done {
            return (messages, next);
        }
    }
}

/// One `FETCH offset max` and its reply.
fn fetch_once(c: &mut Client, offset: u64, max: usize) -> (Vec<(u64, Vec<u8>)>, u64) {
    c.send(format!("FETCH {offset} {max}\n"));
    let mut messages = Vec::new();
    loop {
        let line = c.line_bytes();
        let text = String::from_utf8_lossy(&line).into_owned();
        if let Some(end) = text.strip_prefix("END offset:") {
            return (messages, end.parse().expect("END offset"));
        }
        let (b64, rest) = if let Some(rest) = line.strip_prefix(b"MESSAGE64 offset:") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix(b"MESSAGE offset:") {
            (false, rest)
        } else {
            panic!("unexpected FETCH reply line {text:?}");
        };
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or_else(|| panic!("no space in {text:?}"));
        let offset: u64 = std::str::from_utf8(&rest[..space])
            .unwrap()
            .parse()
            .unwrap();
        let body = &rest[space + 1..];
        let value = if b64 {
            base64_decode(body).unwrap_or_else(|| panic!("bad base64 in {text:?}"))
        } else {
            body.to_vec()
        };
        messages.push((offset, value));
    }
}

/// Standard base64 with padding.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::new();
    for chunk in text.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// One of the independent jobs [`parallel`] runs.
pub type Job<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Runs closures on threads at once (independent client runs), returning
/// their results in order.
pub fn parallel<T: Send>(jobs: Vec<Job<'_, T>>) -> Vec<T> {
    thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|j| s.spawn(j)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}
