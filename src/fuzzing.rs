//! Entry points for the fuzz targets in `fuzz/` (text protocol and
//! storage) and for `tests/fuzz_corpus.rs`, which runs the checked-in
//! corpus through the same functions on stable Rust. The Kafka codecs have
//! theirs in [`crate::protocol::kafka::fuzzing`].
//!
//! Each function must return normally for *any* input. The assertions in
//! them are properties that hold for every input (a stream split
//! differently decodes to the same frames, a directory the broker opened
//! opens again the same), so a failing one is a bug the fuzzer found.
//!
//! The storage targets work in a fresh directory under
//! [`std::env::temp_dir`] per call (set `TMPDIR=/dev/shm` to keep the disk
//! out of it) and remove it afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::broker::{Broker, ConnId, PartitionId};
use crate::config::{Config, FsyncPolicy};
use crate::protocol::text::{Frame, LineDecoder, ParseError, Request, parse};
use crate::storage::{self, Offsets, crc32c};
use crate::util::is_valid_name;

// ----- text protocol --------------------------------------------------------

/// One frame of the line decoder, owned, for comparing two runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Line(Vec<u8>),
    TooLong,
    Interrupt,
    Reply([u8; 3]),
}

/// Feeds `stream` to a fresh [`LineDecoder`] of limit `max` in pieces of
/// the given lengths (the last piece takes the rest), checking on every
/// call that it makes progress or returns a frame, uses no more than it
/// was given and buffers at most `max + 1` bytes. Returns the frames.
pub fn decode_in_pieces(max: usize, stream: &[u8], pieces: &[usize]) -> Vec<Decoded> {
    let mut decoder = LineDecoder::new(max);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = pieces.iter();
    while !rest.is_empty() {
        let size = sizes.next().map_or(rest.len(), |&n| n.clamp(1, rest.len()));
        let (mut input, after) = rest.split_at(size);
        rest = after;
        // A call may return a frame without using a byte (a line ends the
        // moment an over-long one is found), but never twice in a row.
        let mut idle = 0;
        while !input.is_empty() {
            let (used, frame) = decoder.decode(input);
            assert!(used <= input.len(), "used {used} of {}", input.len());
            assert!(used > 0 || frame.is_some(), "no progress and no frame");
            idle = if used == 0 { idle + 1 } else { 0 };
            assert!(idle <= 1, "two calls in a row used nothing");
            match frame {
                Some(Frame::Line(line)) => {
                    assert!(line.len() <= max, "a line of {} > {max}", line.len());
                    assert!(!line.contains(&b'\n'), "a line holds a newline");
                    frames.push(Decoded::Line(line.to_vec()));
                }
                Some(Frame::TooLong) => frames.push(Decoded::TooLong),
                Some(Frame::Interrupt) => frames.push(Decoded::Interrupt),
                Some(Frame::Reply(r)) => frames.push(Decoded::Reply(r)),
                None => {}
            }
            assert!(
                decoder.buffered() <= max.saturating_add(1),
                "{} bytes buffered, limit {max}",
                decoder.buffered()
            );
            input = &input[used..];
        }
    }
    frames
}

/// What the decoder must make of a stream without telnet commands (no
/// `0xFF` byte): its complete lines, a `\r` before the `\n` dropped,
/// over-long ones reported as such; an unterminated tail is no line, but
/// is reported too long as soon as it is longer than `max + 1` (the one
/// byte of slack for a `\r` that may come before its `\n`).
pub fn plain_lines(max: usize, stream: &[u8]) -> Vec<Decoded> {
    let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = lines.pop().unwrap_or_default();
    let too_long_tail = (tail.len() > max.saturating_add(1)).then_some(Decoded::TooLong);
    lines
        .into_iter()
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                Decoded::TooLong
            } else {
                Decoded::Line(line.to_vec())
            }
        })
        .chain(too_long_tail)
        .collect()
}

/// A small deterministic generator for split points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The line decoder target. The first byte picks the line limit, the next
/// two seed the split points, the rest is the stream. The stream is
/// decoded whole, a byte at a time, and in pseudo-random pieces; all three
/// must give the same frames, and without telnet bytes the frames must be
/// [`plain_lines`]. Every line is also given to the request parser.
pub fn line_decoder(data: &[u8]) {
    let (max, seed, stream) = match data {
        [m, a, b, rest @ ..] => {
            let max = match m {
                0..=127 => usize::from(*m % 32),
                128..=191 => 64 + usize::from(*m),
                _ => 1 << 20,
            };
            (max, u64::from(u16::from_le_bytes([*a, *b])), rest)
        }
        _ => (8, 0, data),
    };
    let whole = decode_in_pieces(max, stream, &[]);
    let ones = vec![1; stream.len()];
    assert_eq!(
        decode_in_pieces(max, stream, &ones),
        whole,
        "byte at a time"
    );
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut pieces = Vec::new();
    let mut total = 0;
    while total < stream.len() {
        // Mostly small pieces, sometimes large ones.
        let n = if rng.next().is_multiple_of(4) {
            1 + (rng.next() % 4096) as usize
        } else {
            1 + (rng.next() % 8) as usize
        };
        pieces.push(n);
        total += n;
    }
    assert_eq!(
        decode_in_pieces(max, stream, &pieces),
        whole,
        "pieces {pieces:?}"
    );
    if !stream.contains(&0xFF) {
        assert_eq!(whole, plain_lines(max, stream), "against the plain model");
    }
    for frame in &whole {
        if let Decoded::Line(line) = frame {
            text_request(line);
        }
    }
}

/// The request parser target: parses `data` as one line, then each of its
/// `\n`-separated parts. Properties: the command word's case does not
/// matter, a `PRODUCE` message is the exact bytes after the first space,
/// and every error renders as one line starting with its reply word.
pub fn text_request(data: &[u8]) {
    request_line(data);
    if data.contains(&b'\n') {
        for line in data.split(|&b| b == b'\n') {
            request_line(line);
        }
    }
}

fn request_line(line: &[u8]) {
    let parsed = parse(line);
    let word_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let mut upper = line.to_vec();
    upper[..word_end].make_ascii_uppercase();
    let mut lower = line.to_vec();
    lower[..word_end].make_ascii_lowercase();
    assert_eq!(parse(&upper), parsed, "upper-cased command word");
    assert_eq!(parse(&lower), parsed, "lower-cased command word");
    match &parsed {
        Ok(Request::Produce(message)) => {
            assert!(!message.is_empty());
            assert_eq!(*message, &line[word_end + 1..]);
        }
        Ok(Request::Auth(token)) => assert_eq!(*token, &line[word_end + 1..]),
        Ok(Request::Fetch { max, wait_ms, .. }) => {
            assert!((1..=crate::protocol::text::MAX_FETCH_COUNT).contains(max));
            assert!(wait_ms.is_none_or(|w| w <= crate::protocol::text::MAX_WAIT_MS));
        }
        Ok(
            Request::Use(name, _)
            | Request::Create(name, _)
            | Request::Delete(name)
            | Request::Join(name, _)
            | Request::Heartbeat(name, _)
            | Request::Leave(name)
            | Request::Offset(name)
            | Request::Commit { group: name, .. },
        ) => assert!(is_valid_name(name)),
        Ok(_) => {}
        Err(e) => {
            let text = e.to_string();
            let word = match e {
                ParseError::InvalidRequest(_) => "INVALID_REQUEST ",
                ParseError::InvalidOffset(_) => "INVALID_OFFSET ",
            };
            assert!(text.starts_with(word) && !text.contains('\n'), "{text:?}");
        }
    }
}

// ----- storage --------------------------------------------------------------

/// A scratch directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("klb-fuzz-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create scratch dir {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The committed-offsets target: `data` is `consumer_offsets.txt`; the
/// first byte also picks `durable_acks`. If it opens, every entry has
/// valid names, reopening (after the compaction the open did) gives the
/// same entries, and a new commit survives another reopen.
/// Returns the number of entries, or the open error.
pub fn offsets_file(data: &[u8]) -> Result<usize, String> {
    let scratch = Scratch::new("offsets");
    let dir = &scratch.0;
    let path = dir.join(storage::offsets::OFFSETS_FILE);
    fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let durable = data.first().is_some_and(|b| b & 1 == 1);
    let offsets = Offsets::open(dir, durable).map_err(|e| e.to_string())?;
    let entries = sorted_entries(&offsets);
    assert_eq!(entries.len(), offsets.len());
    let mut groups: Vec<&[u8]> = entries.iter().map(|e| &e.2[..]).collect();
    groups.sort();
    groups.dedup();
    assert_eq!(groups.len(), offsets.group_count());
    for (topic, partition, group, offset) in &entries {
        assert!(is_valid_name(topic) && is_valid_name(group), "{entries:?}");
        assert_eq!(offsets.get(topic, *partition, group), Some(*offset));
    }
    drop(offsets);
    let mut again = Offsets::open(dir, durable).expect("a compacted offsets file reopens");
    assert_eq!(sorted_entries(&again), entries, "entries after reopen");
    let seq = again.stage(b"fuzz", 3, b"g", 42);
    assert!(again.flush().is_none(), "commit write failed");
    let _ = again.sync_now();
    assert!(again.written().seq > seq);
    drop(again);
    let last = Offsets::open(dir, durable).expect("reopen after a commit");
    assert_eq!(last.get(b"fuzz", 3, b"g"), Some(42));
    assert_eq!(
        last.len(),
        entries.len() + 1 - usize::from(has_key(&entries))
    );
    Ok(entries.len())
}

type OwnedEntry = (Vec<u8>, u32, Vec<u8>, u64);

fn sorted_entries(offsets: &Offsets) -> Vec<OwnedEntry> {
    let mut v: Vec<OwnedEntry> = offsets
        .entries()
        .map(|(t, p, g, o)| (t.to_vec(), p, g.to_vec(), o))
        .collect();
    v.sort();
    v
}

fn has_key(entries: &[OwnedEntry]) -> bool {
    entries
        .iter()
        .any(|(t, p, g, _)| t == b"fuzz" && *p == 3 && g == b"g")
}

/// What the recovery target found in a directory the broker opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// (topic, partition, first offset, next offset) of every partition.
    pub partitions: Vec<(String, u32, u64, u64)>,
    /// Messages read back.
    pub messages: u64,
}

/// Options of a data directory image (its first line).
#[derive(Debug, Default, Clone, Copy)]
struct ImageOptions {
    always: bool,
    skip: bool,
    fix_crcs: bool,
    small_segments: bool,
}

/// A file of an image: its relative path and content (`None`: an empty
/// directory).
type ImageFile = (String, Option<Vec<u8>>);

/// Most files in an image.
const MAX_FILES: usize = 64;
/// Reads per partition, and appends, in one run: bounded work.
const MAX_READS: usize = 256;
const MAX_APPENDS: usize = 4;

/// Parses a data directory image:
///
/// ```text
/// always skip crc small          <- options, any of them, before the first @@
/// @@ kafka_log.txt
/// offset:0 message:hello
/// @@ topics/t/topic.meta
/// ...
/// @@ kafka_log.txt.00000000000000000000.index hex
/// 4b 4c 42 ...
/// ```
///
/// A file's content is everything after its `@@` line up to the newline
/// before the next `@@ ` line (that newline is part of the content), or
/// to the end. After the path: `hex` (the content is hex digits, blanks
/// ignored), `chop` (drop the content's last byte, e.g. its newline: a
/// torn write). A path ending in `/` is an empty directory. Paths are
/// relative, of `A-Z a-z 0-9 . _ - ~` components, never `.` or `..`.
/// Options: `always` (`--fsync always`), `skip`
/// (`--skip-corrupt-segments`), `crc` (make every checksum match: index
/// headers, entries and intervals, record batches, the checkpoint, so the
/// fuzzer gets past them), `small` (1 KiB segments, so appends roll).
fn parse_image(data: &[u8]) -> (ImageOptions, Vec<ImageFile>) {
    let mut starts: Vec<usize> = Vec::new();
    if data.starts_with(b"@@ ") {
        starts.push(0);
    }
    starts.extend(
        memchr::memmem::find_iter(data, b"\n@@ ")
            .map(|i| i + 1)
            .take(MAX_FILES),
    );
    let preamble = &data[..starts.first().copied().unwrap_or(data.len())];
    let mut options = ImageOptions::default();
    for word in preamble.split(|b| b.is_ascii_whitespace()) {
        match word {
            b"always" => options.always = true,
            b"skip" => options.skip = true,
            b"crc" => options.fix_crcs = true,
            b"small" => options.small_segments = true,
            _ => {}
        }
    }
    let mut files = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let section = &data[start + 3..end];
        let (head, body) = match section.iter().position(|&b| b == b'\n') {
            Some(i) => (&section[..i], &section[i + 1..]),
            None => (section, &[][..]),
        };
        let mut words = head.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let Some(path) = words.next().and_then(|p| std::str::from_utf8(p).ok()) else {
            continue;
        };
        let (is_dir, path) = match path.strip_suffix('/') {
            Some(p) => (true, p),
            None => (false, path),
        };
        let components: Vec<&str> = path.split('/').collect();
        let safe = components.len() <= 4
            && components.iter().all(|c| {
                !c.is_empty()
                    && *c != "."
                    && *c != ".."
                    && c.len() <= 100
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b))
            });
        if !safe {
            continue;
        }
        if is_dir {
            files.push((path.to_string(), None));
            continue;
        }
        let mut content = body.to_vec();
        for word in words {
            match word {
                b"hex" => content = unhex(&content),
                b"chop" => {
                    content.pop();
                }
                _ => {}
            }
        }
        files.push((path.to_string(), Some(content)));
    }
    (options, files)
}

fn unhex(text: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = text
        .iter()
        .filter_map(|&b| (b as char).to_digit(16).map(|d| d as u8))
        .collect();
    digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// Makes the checksums of an image's files match their contents.
fn fix_crcs(files: &mut [ImageFile]) {
    for i in 0..files.len() {
        let name = files[i].0.clone();
        let file_name = name.rsplit('/').next().unwrap_or(&name);
        if let Some(segment_path) = name.strip_suffix(".index") {
            let segment = files
                .iter()
                .find(|(p, _)| p == segment_path)
                .and_then(|(_, c)| c.clone());
            if let Some(content) = &mut files[i].1 {
                fix_index(content, segment.as_deref());
            }
        } else if file_name.starts_with("log.kafka") {
            if let Some(content) = &mut files[i].1 {
                storage::batch::fix_crcs(content);
            }
        } else if file_name == storage::checkpoint::CHECKPOINT_FILE
            && let Some(content) = &mut files[i].1
            && let Some(at) = memchr::memmem::rfind(content, b"\ncrc32c ")
        {
            let crc = crc32c(&content[..at + 1]);
            content.truncate(at + 8);
            content.extend_from_slice(format!("{crc:08x}\n").as_bytes());
        }
    }
}

/// Fixes an index file's checksums: each entry's interval CRC (from the
/// segment's bytes, where the positions fall inside it), the entries'
/// trailer and the header's.
fn fix_index(index: &mut [u8], segment: Option<&[u8]>) {
    const HEADER: usize = storage::index::HEADER_BYTES;
    if index.len() < HEADER {
        return;
    }
    let body_end = index.len().saturating_sub(4).max(HEADER);
    let entries = (body_end - HEADER) / 12;
    if let Some(segment) = segment {
        let pos = |index: &[u8], e: usize| {
            let at = HEADER + e * 12 + 4;
            u32::from_le_bytes([index[at], index[at + 1], index[at + 2], index[at + 3]]) as usize
        };
        for e in 0..entries {
            let from = pos(index, e);
            let to = if e + 1 < entries {
                pos(index, e + 1)
            } else {
                segment.len()
            };
            if let Some(bytes) = segment.get(from..to) {
                let at = HEADER + e * 12 + 8;
                index[at..at + 4].copy_from_slice(&crc32c(bytes).to_le_bytes());
            }
        }
    }
    if index.len() >= HEADER + 4 {
        let crc = crc32c(&index[HEADER..body_end]);
        index[body_end..body_end + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c(&index[..44]);
    index[44..48].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the files of a data directory image under `dir`.
fn write_image(dir: &Path, files: &[ImageFile]) {
    for (path, content) in files {
        let path = dir.join(path);
        // A clash (a file where a directory is wanted) is the image's
        // business: skip what cannot be made.
        match content {
            None => {
                let _ = fs::create_dir_all(&path);
            }
            Some(bytes) => {
                if let Some(parent) = path.parent() {
                    let _ = fs::create_dir_all(parent);
                }
                let _ = fs::write(&path, bytes);
            }
        }
    }
}

/// The config the recovery target opens an image with.
fn image_config(dir: &Path, options: ImageOptions) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        fsync: if options.always {
            FsyncPolicy::Always
        } else {
            FsyncPolicy::Never
        },
        skip_corrupt_segments: options.skip,
        segment_bytes: if options.small_segments {
            1024
        } else {
            crate::config::DEFAULT_SEGMENT_BYTES
        },
        ..Config::default()
    }
}

/// Runs the helper-thread jobs the broker queued, on this thread.
fn run_jobs(broker: &mut Broker) {
    for _ in 0..8 {
        let jobs = broker.take_jobs();
        if jobs.is_empty() {
            return;
        }
        for (journal, job) in jobs {
            if let Some(result) = job.run() {
                broker.job_done(journal, result);
            }
        }
    }
}

fn partition_ids(broker: &Broker) -> Vec<(PartitionId, String)> {
    broker
        .partitions()
        .into_iter()
        .filter_map(|info| {
            let topic = broker.lookup(&info.topic)?;
            Some((
                PartitionId {
                    topic,
                    partition: info.partition,
                },
                String::from_utf8_lossy(&info.topic).into_owned(),
            ))
        })
        .collect()
}

fn summary(broker: &Broker) -> Vec<(String, u32, u64, u64)> {
    let mut v: Vec<_> = broker
        .partitions()
        .into_iter()
        .map(|i| {
            assert!(i.first <= i.next, "{i:?}");
            (
                String::from_utf8_lossy(&i.topic).into_owned(),
                i.partition,
                i.first,
                i.next,
            )
        })
        .collect();
    v.sort();
    v
}

/// Reads a partition from its first offset to its end, in bounded steps;
/// past an error or a read that makes no progress, from the next offset.
/// Every message served lies in the range asked for. Returns how many.
fn read_all(broker: &mut Broker, p: PartitionId) -> u64 {
    let end = broker.visible_end(p);
    let mut at = broker.first_offset(p);
    let mut messages = 0;
    for _ in 0..MAX_READS {
        if at >= end {
            break;
        }
        let from = at;
        let result = broker.read(p, from, 1000, 64 << 10, |o, _| {
            assert!(o >= from && o < end, "offset {o} served for {from}..{end}");
            messages += 1;
            true
        });
        at = match result {
            Ok(next) if next > from => {
                assert!(next <= end, "next {next} past the end {end}");
                next
            }
            _ => from + 1,
        };
    }
    // The Kafka path: stored batches, or batches built from lines.
    let mut at = broker.first_offset(p);
    let text = broker.topic_format(p.topic) == storage::Format::Text;
    for _ in 0..MAX_READS / 4 {
        if at >= end {
            break;
        }
        let mut out = Vec::new();
        at = match broker.read_batches(p, at, 64 << 10, &mut out) {
            Ok(next) if next > at => {
                if text {
                    for batch in storage::batch::Batches::new(&out) {
                        let (_, bytes) = batch.expect("a batch built from lines parses");
                        storage::batch::validate(bytes).expect("a batch built from lines is valid");
                    }
                }
                next
            }
            _ => at + 1,
        };
    }
    messages
}

/// The storage recovery target: builds a data directory from the image in
/// `data` (see [`parse_image`]) and opens it as the broker does. If it
/// opens: every partition is read from first to last offset (bounded), a
/// message appended to a few partitions reads back with its bytes at its
/// offset, and the directory opens again with the same offsets. Returns
/// what it found, or the open error.
pub fn storage_recovery(data: &[u8]) -> Result<Recovered, String> {
    let (options, mut files) = parse_image(data);
    if options.fix_crcs {
        fix_crcs(&mut files);
    }
    let scratch = Scratch::new("recovery");
    let dir = &scratch.0;
    write_image(dir, &files);
    let config = image_config(dir, options);
    let mut broker = Broker::open(&config, None).map_err(|e| e.to_string())?;
    run_jobs(&mut broker);
    let before = summary(&broker);
    let mut messages = 0;
    for (p, _) in partition_ids(&broker) {
        messages += read_all(&mut broker, p);
    }
    // Appends after recovery land where they should.
    let conn = ConnId {
        slot: 1,
        generation: 1,
    };
    let mut appended = Vec::new();
    for (p, _) in partition_ids(&broker).into_iter().take(MAX_APPENDS) {
        if let Ok(ticket) = broker.append(p, b"fuzz", conn) {
            appended.push((p, ticket.offset));
        }
    }
    broker.flush();
    run_jobs(&mut broker);
    broker.sync_all();
    run_jobs(&mut broker);
    for &(p, offset) in &appended {
        if broker.visible_end(p) <= offset {
            continue; // the append failed (STORAGE_ERROR to its producer)
        }
        let mut got = Vec::new();
        let result = broker.read(p, offset, 1, 1 << 10, |o, m| {
            got.push((o, m.to_vec()));
            true
        });
        assert!(result.is_ok(), "reading back {p:?} at {offset}: {result:?}");
        assert_eq!(got, vec![(offset, b"fuzz".to_vec())], "{p:?} at {offset}");
    }
    let after = summary(&broker);
    drop(broker);
    let mut again = Broker::open(&config, None)
        .unwrap_or_else(|e| panic!("a directory opened once does not open again: {e}"));
    run_jobs(&mut again);
    assert_eq!(summary(&again), after, "offsets after a reopen");
    drop(again);
    Ok(Recovered {
        partitions: before,
        messages,
    })
}

/// The image (see [`parse_image`]) of the data directory `dir`, with
/// `options` as its first line: how the seed corpus is made from
/// directories the broker wrote. Text files are kept as text, binary ones
/// as hex; `.lock` and `*.tmp` are left out.
pub fn image_of(dir: &Path, options: &str) -> std::io::Result<Vec<u8>> {
    let mut paths = Vec::new();
    collect_files(dir, Path::new(""), &mut paths)?;
    paths.sort();
    let mut out = options.as_bytes().to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    for (rel, is_dir) in paths {
        let name = rel.to_string_lossy();
        if is_dir {
            out.extend_from_slice(format!("@@ {name}/\n").as_bytes());
            continue;
        }
        let bytes = fs::read(dir.join(&rel))?;
        let text = std::str::from_utf8(&bytes)
            .is_ok_and(|t| !t.starts_with("@@ ") && !t.contains("\n@@ ") && !t.contains('\0'));
        if text {
            let chop = !bytes.is_empty() && !bytes.ends_with(b"\n");
            out.extend_from_slice(
                format!("@@ {name}{}\n", if chop { " chop" } else { "" }).as_bytes(),
            );
            out.extend_from_slice(&bytes);
            if chop {
                out.push(b'\n');
            }
        } else {
            out.extend_from_slice(format!("@@ {name} hex\n").as_bytes());
            for row in bytes.chunks(16) {
                let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
                out.extend_from_slice(hex.join(" ").as_bytes());
                out.push(b'\n');
            }
        }
    }
    Ok(out)
}

fn collect_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) -> std::io::Result<()> {
    let mut any = false;
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == ".lock" || name_str.ends_with(".tmp") {
            continue;
        }
        any = true;
        let path = rel.join(&name);
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            out.push((path, false));
        }
    }
    if !any && !rel.as_os_str().is_empty() {
        out.push((rel.to_path_buf(), true));
    }
    Ok(())
}
