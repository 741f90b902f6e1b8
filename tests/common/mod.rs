//! Shared helpers for the integration tests: start the real `broker` binary
//! on `127.0.0.1:0` in a fresh temp dir, and talk to it over TCP.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub const BROKER: &str = env!("CARGO_BIN_EXE_broker");

/// A running broker process; killed when dropped.
pub struct BrokerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The data directory it was started on.
    pub data_dir: PathBuf,
    /// Where its stderr (the log) goes.
    pub stderr_path: PathBuf,
}

impl BrokerProcess {
    /// Starts a broker on an ephemeral port with `data_dir`, plus `args`.
    pub fn start(data_dir: &Path, args: &[&str]) -> BrokerProcess {
        Self::start_on(data_dir, "127.0.0.1:0", args)
    }

    /// Starts a broker on `addr` with `data_dir`, plus `args`.
    pub fn start_on(data_dir: &Path, addr: &str, args: &[&str]) -> BrokerProcess {
        let mut command = Command::new(BROKER);
        command
            .args(["--addr", addr, "--data-dir"])
            .arg(data_dir)
            .args(args);
        Self::spawn(command, data_dir)
    }

    /// Starts a prepared command (for wrappers such as `sh -c 'ulimit ...'`)
    /// and waits for its `Broker started on` line.
    pub fn spawn(mut command: Command, data_dir: &Path) -> BrokerProcess {
        let stderr_path = stderr_path_for(data_dir);
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("create stderr file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .spawn()
            .expect("spawn broker");
        let stdout = child.stdout.take().expect("stdout");
        let line = read_first_line(stdout, TIMEOUT).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!(
                "broker did not start: {e}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        let addr_text = line
            .strip_prefix("Broker started on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let port: u16 = addr_text
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        BrokerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir: data_dir.to_path_buf(),
            stderr_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal and waits for the exit, failing after `TIMEOUT`.
    pub fn signal_and_wait(&mut self, signal: &str) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        (self.wait(TIMEOUT), started.elapsed())
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// What the broker logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The default topic's log file, as bytes.
    pub fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.join("kafka_log.txt")).expect("read kafka_log.txt")
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker's stderr goes beside (not inside) its data directory.
pub fn stderr_path_for(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map_or("data".into(), |n| n.to_string_lossy().into_owned());
    data_dir.with_file_name(format!("{name}.broker-stderr.log"))
}

/// Reads one line from `source` on a helper thread, with a timeout.
pub fn read_first_line(
    source: impl Read + Send + 'static,
    timeout: Duration,
) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut line = String::new();
        let result = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(result);
        // Keep the pipe open (and drained) for the life of the process.
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) if !line.is_empty() => Ok(line.trim_end_matches('\n').to_string()),
        Ok(Ok(_)) => Err("stdout closed before the first line".into()),
        Ok(Err(e)) => Err(format!("reading stdout: {e}")),
        Err(_) => Err(format!("no first line within {timeout:?}")),
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// A fresh temp dir with a `data` subdirectory path (not created: the
/// broker creates it).
pub fn temp_data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    (tmp, data)
}

/// A blocking protocol client with timeouts, so a hang fails the test.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to broker");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(TIMEOUT))
            .expect("set_write_timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone stream")),
            writer: stream,
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.writer
            .write_all(bytes.as_ref())
            .expect("write to broker");
    }

    /// Reads one reply line, without its `\n`, as raw bytes.
    pub fn line_bytes(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .expect("read reply");
        assert!(n > 0, "broker closed the connection instead of replying");
        assert_eq!(line.pop(), Some(b'\n'), "reply without a newline: {line:?}");
        line
    }

    /// Reads one reply line as text.
    pub fn line(&mut self) -> String {
        String::from_utf8(self.line_bytes()).expect("utf-8 reply")
    }

    /// Sends `request` plus `\n` and returns the one-line reply.
    pub fn request(&mut self, request: &str) -> String {
        self.send(format!("{request}\n"));
        self.line()
    }

    /// Reads lines until one starts with `end` (that one included).
    pub fn lines_until(&mut self, end: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.starts_with(end);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// The value of `STAT <name>`.
    pub fn stat(&mut self, name: &str) -> u64 {
        self.send("STATS\n");
        let lines = self.lines_until("END");
        let prefix = format!("STAT {name} ");
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
            .parse()
            .unwrap()
    }

    /// Asserts the broker closes the connection without sending more.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes before close: {rest:?}"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the connection to close, got {e}"),
        }
    }
}

/// Produces messages `p<id>-<i>` as fast as the broker takes them: a writer
/// thread pipelines up to `limit` requests while this thread reads the
/// ACKs, until the limit or until the broker dies. Returns what was
/// acknowledged, as (offset, message); counts ACKs in `acks` as they come.
pub fn pipelined_producer(
    addr: SocketAddr,
    id: usize,
    limit: u64,
    acks: Arc<AtomicUsize>,
) -> thread::JoinHandle<Vec<(u64, String)>> {
    thread::spawn(move || {
        let mut c = Client::connect(addr);
        let mut writer = c.writer.try_clone().expect("clone stream");
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < limit {
                    let mut chunk = String::new();
                    for _ in 0..32 {
                        chunk.push_str(&format!("PRODUCE p{id}-{i}\n"));
                        i += 1;
                    }
                    if writer.write_all(chunk.as_bytes()).is_err() {
                        break;
                    }
                }
            })
        };
        let mut acked = Vec::new();
        let mut line = Vec::new();
        let mut i = 0u64;
        loop {
            line.clear();
            match c.reader.read_until(b'\n', &mut line) {
                Ok(n) if n > 0 && line.ends_with(b"\n") => {}
                _ => break, // the broker died, or all were acknowledged
            }
            let text = std::str::from_utf8(&line).expect("utf-8").trim_end();
            let offset: u64 = text
                .strip_prefix("ACK offset:")
                .unwrap_or_else(|| panic!("{text}"))
                .parse()
                .expect("offset");
            acked.push((offset, format!("p{id}-{i}")));
            acks.fetch_add(1, Ordering::Relaxed);
            i += 1;
            if i == limit.div_ceil(32) * 32 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = sender.join();
        acked
    })
}

/// Runs the broker with `args` expecting it to refuse to start: returns its
/// output, and fails (instead of hanging) if it is still running after
/// `TIMEOUT`.
pub fn run_expecting_refusal(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut child = Command::new(BROKER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn broker");
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "the broker started instead of refusing; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("wait")
}

/// A broker served in this process on `127.0.0.1:0` (no child process):
/// configured with the binary's own flags, stopped (cleanly: synced and
/// replied) when dropped.
pub struct InProcess {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    handle: Option<kafka_like_broker::server::ShutdownHandle>,
    thread: Option<thread::JoinHandle<()>>,
}

impl InProcess {
    /// Starts a broker on `data_dir` with `args` (broker flags).
    pub fn start(data_dir: &Path, args: &[&str]) -> InProcess {
        let mut all: Vec<std::ffi::OsString> = vec![
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.into(),
        ];
        all.extend(args.iter().map(Into::into));
        let config = kafka_like_broker::config::parse_args(all)
            .expect("valid broker flags")
            .expect("not --help");
        let (tx, rx) = mpsc::channel();
        // The server holds `Rc`s: it is built and run on its own thread.
        let thread = thread::spawn(move || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            match kafka_like_broker::Server::with_listener(config, listener) {
                Ok(server) => {
                    let _ = tx.send(Ok((server.local_addr(), server.shutdown_handle())));
                    server.serve().expect("serve");
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
        let (addr, handle) = rx
            .recv_timeout(TIMEOUT)
            .expect("the broker thread answers")
            .unwrap_or_else(|e| panic!("broker did not start: {e}"));
        InProcess {
            addr,
            data_dir: data_dir.to_path_buf(),
            handle: Some(handle),
            thread: Some(thread),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops it as SIGTERM would, waiting for it to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the broker thread panicked");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(handle) = self.handle.take() {
                handle.shutdown();
            }
            return;
        }
        self.shutdown();
    }
}

/// The seed inputs checked in for fuzz target `target`
/// (`fuzz/corpus/<target>/`), as (file name, bytes), sorted by name.
pub fn fuzz_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}
