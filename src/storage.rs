//! The message log: one append-only text file, read back through a sparse
//! index.
//!
//! # File format
//! One line per message, exactly as the original project wrote it:
//!
//! ```text
//! offset:0 message:hello
//! offset:1 message:world
//! ```
//!
//! Offsets start at 0 and increase by one per line. The message is every
//! byte between `message:` and the `\n`; it may hold any byte except `\n`
//! (the protocol cannot carry one). `docs/STORAGE.md` documents the format
//! for users.
//!
//! # Writing
//! Messages are first *staged* into an in-memory batch and get their offsets
//! at once; [`Log::flush`] writes the whole batch with one `write` call
//! (looping only on short writes). If the write fails the file is truncated
//! back to its last good length and the staged offsets are given back, so an
//! error never consumes an offset and never leaves half a line behind.
//!
//! # Reading
//! The log keeps a sparse index, one `(offset, byte position)` entry every
//! [`INDEX_INTERVAL`] bytes, so memory does not grow with one entry per
//! message. A read starts at the nearest entry at or before the wanted
//! offset (or where the previous read stopped) and scans forward with
//! `pread`; only flushed messages are visible.
//!
//! # Recovery
//! [`Log::open`] scans the file once: every line must be
//! `offset:<n> message:<bytes>` with `n` following the previous line. A last
//! line without its `\n` (a write torn by a crash) is cut off with a
//! warning; anything else that does not parse stops the open with an error
//! naming the file and line, and the file is left untouched.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use log::{info, warn};
use memchr::memchr;

use crate::protocol::{parse_u64, push_u64};

/// Bytes of log between two sparse index entries.
pub const INDEX_INTERVAL: u64 = 4096;

const HEADER: &[u8] = b"offset:";
const SEPARATOR: &[u8] = b" message:";

/// An error from the log, with the file it concerns.
#[derive(Debug)]
pub enum StorageError {
    /// An I/O call failed.
    Io {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    /// The file holds something that is not a log line where one should be.
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

impl StorageError {
    pub(crate) fn io(path: &Path, what: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    /// A short reason for a client, without the server's paths.
    pub fn client_reason(&self) -> String {
        match self {
            StorageError::Io { what, source, .. } => format!("{what}: {source}"),
            StorageError::Corrupt { .. } => "log file is corrupt; see the broker's log".to_string(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, what, source } => {
                write!(f, "{}: {what}: {source}", path.display())
            }
            StorageError::Corrupt { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            StorageError::Corrupt { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    offset: u64,
    pos: u64,
}

/// An append-only log of messages in one file.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    file: File,
    /// Bytes of complete lines in the file.
    len: u64,
    /// The offset of the first message not yet in the file.
    flushed: u64,
    /// The offset the next staged message gets.
    next: u64,
    /// Lines staged for the next flush.
    batch: Vec<u8>,
    /// Sparse index; always starts with `(0, 0)`.
    index: Vec<IndexEntry>,
    /// Position of the last index entry (or of the line that would have
    /// been indexed), for deciding when the next one is due.
    last_indexed: u64,
    /// A failed append left bytes past `len` that could not be cut yet.
    dirty_tail: bool,
    /// Where the last read stopped, so sequential readers do not rescan.
    hint: IndexEntry,
}

impl Log {
    /// Opens (creating if needed) the log at `path` and recovers it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Log, StorageError> {
        let path = path.into();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, "open", e))?;
        let (len, next, index, torn) = recover(&path, &mut file)?;
        if torn > 0 {
            warn!(
                "log={} cutting a torn last line: {torn} bytes after byte {len} had no newline",
                path.display()
            );
            file.set_len(len)
                .map_err(|e| StorageError::io(&path, format!("truncate to {len}"), e))?;
        }
        info!(
            "log={} recovered messages={next} bytes={len} index_entries={}",
            path.display(),
            index.len()
        );
        let last_indexed = index.last().map_or(0, |e| e.pos);
        Ok(Log {
            path,
            file,
            len,
            flushed: next,
            next,
            batch: Vec::new(),
            index,
            last_indexed,
            dirty_tail: false,
            hint: IndexEntry { offset: 0, pos: 0 },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset the next message will get (staged messages included).
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The offset just past the last message in the file: readers see
    /// `0..flushed_offset()`.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed
    }

    /// Bytes in the file.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Whether messages are staged but not yet written.
    pub fn has_staged(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Bytes staged for the next flush.
    pub fn staged_bytes(&self) -> usize {
        self.batch.len()
    }

    /// Stages `message` for the next [`flush`](Self::flush) and returns its
    /// offset. Nothing is in the file until the flush succeeds.
    pub fn stage(&mut self, message: &[u8]) -> u64 {
        let offset = self.next;
        let pos = self.len + self.batch.len() as u64;
        if pos - self.last_indexed >= INDEX_INTERVAL {
            self.index.push(IndexEntry { offset, pos });
            self.last_indexed = pos;
        }
        self.batch.extend_from_slice(HEADER);
        push_u64(&mut self.batch, offset);
        self.batch.extend_from_slice(SEPARATOR);
        self.batch.extend_from_slice(message);
        self.batch.push(b'\n');
        self.next += 1;
        offset
    }

    /// Writes every staged message with one `write` call and returns the
    /// offsets written. On failure nothing staged stays in the file and the
    /// staged offsets are given back.
    pub fn flush(&mut self) -> Result<Range<u64>, StorageError> {
        let written = self.flushed..self.next;
        if self.batch.is_empty() {
            return Ok(written);
        }
        let result = self.cut_dirty_tail().and_then(|()| {
            write_all(&self.file, &self.batch).map_err(|e| {
                StorageError::io(&self.path, format!("append at byte {}", self.len), e)
            })
        });
        match result {
            Ok(()) => {
                self.len += self.batch.len() as u64;
                self.flushed = self.next;
                self.clear_batch();
                Ok(written)
            }
            Err(err) => {
                self.next = self.flushed;
                self.clear_batch();
                while self
                    .index
                    .last()
                    .is_some_and(|e| e.pos >= self.len && e.pos > 0)
                {
                    self.index.pop();
                }
                self.last_indexed = self.index.last().map_or(0, |e| e.pos);
                self.dirty_tail = true;
                if let Err(cut) = self.cut_dirty_tail() {
                    log::error!("{cut}; will retry before the next append");
                }
                Err(err)
            }
        }
    }

    /// Forces written data to stable storage (`fdatasync`).
    pub fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io(&self.path, "fdatasync", e))
    }

    fn clear_batch(&mut self) {
        self.batch.clear();
        if self.batch.capacity() > 8 << 20 {
            self.batch.shrink_to(1 << 20);
        }
    }

    /// Cuts whatever a failed append left past the last good length.
    fn cut_dirty_tail(&mut self) -> Result<(), StorageError> {
        if self.dirty_tail {
            self.file.set_len(self.len).map_err(|e| {
                StorageError::io(
                    &self.path,
                    format!("truncate to {} after a failed append", self.len),
                    e,
                )
            })?;
            self.dirty_tail = false;
        }
        Ok(())
    }

    /// Reads up to `max_count` messages starting at offset `from`, calling
    /// `emit(offset, message)` for each, and returns the offset after the
    /// last one emitted (`from` if none). Stops before a message that would
    /// take the total past `max_bytes`, but always emits at least one if
    /// there is one. `buf` is scratch space, reused between calls.
    pub fn read(
        &mut self,
        from: u64,
        max_count: usize,
        max_bytes: usize,
        buf: &mut Vec<u8>,
        mut emit: impl FnMut(u64, &[u8]),
    ) -> Result<u64, StorageError> {
        if from >= self.flushed || max_count == 0 {
            return Ok(from);
        }
        let mut start = self.index[self.index.partition_point(|e| e.offset <= from) - 1];
        if self.hint.offset <= from && self.hint.offset > start.offset {
            start = self.hint;
        }
        let (mut offset, mut pos) = (start.offset, start.pos);
        let (mut count, mut bytes) = (0usize, 0usize);
        // Small first read for single lookups; larger ones for batches.
        let mut chunk: usize = if max_count == 1 { 8 << 10 } else { 64 << 10 };
        'reading: while offset < self.flushed {
            let want = (chunk as u64).min(self.len - pos) as usize;
            if want == 0 {
                return Err(StorageError::Corrupt {
                    path: self.path.clone(),
                    line: offset + 1,
                    reason: format!("file ends at byte {pos} before offset {offset}"),
                });
            }
            buf.resize(want, 0);
            self.file
                .read_exact_at(buf, pos)
                .map_err(|e| StorageError::io(&self.path, format!("read at byte {pos}"), e))?;
            let mut used = 0;
            while let Some(i) = memchr(b'\n', &buf[used..]) {
                let line = &buf[used..used + i];
                if offset >= from {
                    let message =
                        message_of(line, offset).ok_or_else(|| StorageError::Corrupt {
                            path: self.path.clone(),
                            line: offset + 1,
                            reason: format!(
                                "expected a line for offset {offset} at byte {}",
                                pos + used as u64
                            ),
                        })?;
                    if count > 0 && bytes + message.len() > max_bytes {
                        pos += used as u64;
                        break 'reading;
                    }
                    emit(offset, message);
                    count += 1;
                    bytes += message.len();
                }
                offset += 1;
                used += i + 1;
                if count == max_count || offset == self.flushed {
                    break;
                }
            }
            pos += used as u64;
            if used == 0 {
                // A line longer than the chunk: read more at once.
                chunk = chunk.saturating_mul(4);
            } else {
                chunk = chunk.max(64 << 10);
            }
            if count == max_count {
                break;
            }
        }
        self.hint = IndexEntry { offset, pos };
        if buf.capacity() > 4 << 20 {
            buf.clear();
            buf.shrink_to(64 << 10);
        }
        Ok(offset)
    }
}

/// Writes all of `data` with as few `write` calls as the kernel allows.
fn write_all(mut file: &File, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        match file.write(&data[done..]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The message in `line` if it is the log line for `offset`.
fn message_of(line: &[u8], offset: u64) -> Option<&[u8]> {
    let rest = line.strip_prefix(HEADER)?;
    let digits_end = rest.iter().position(|b| !b.is_ascii_digit())?;
    let (digits, rest) = rest.split_at(digits_end);
    if parse_u64(digits)? != offset || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    rest.strip_prefix(SEPARATOR)
}

/// Scans the whole file. Returns (length of the complete lines, next offset,
/// sparse index, bytes of a torn last line).
fn recover(path: &Path, file: &mut File) -> Result<(u64, u64, Vec<IndexEntry>, u64), StorageError> {
    let mut index = vec![IndexEntry { offset: 0, pos: 0 }];
    let mut last_indexed = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0usize;
    let mut pos = 0u64; // file position of buf[0]
    let mut offset = 0u64;
    loop {
        if filled == buf.len() {
            let bigger = buf.len() * 2;
            buf.resize(bigger, 0);
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(StorageError::io(
                    path,
                    format!("read at byte {}", pos + filled as u64),
                    e,
                ));
            }
        };
        if n == 0 {
            return Ok((pos, offset, index, filled as u64));
        }
        filled += n;
        let mut used = 0;
        while let Some(i) = memchr(b'\n', &buf[used..filled]) {
            let line = &buf[used..used + i];
            if message_of(line, offset).is_none() {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    line: offset + 1,
                    reason: format!(
                        "expected \"offset:{offset} message:...\", found {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(60)])
                    ),
                });
            }
            let line_pos = pos + used as u64;
            if line_pos - last_indexed >= INDEX_INTERVAL {
                index.push(IndexEntry {
                    offset,
                    pos: line_pos,
                });
                last_indexed = line_pos;
            }
            offset += 1;
            used += i + 1;
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        pos += used as u64;
        if buf.len() > 1 << 20 && filled < 1 << 19 {
            buf.truncate(1 << 20);
            buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(log: &mut Log, from: u64, max: usize) -> Vec<(u64, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        log.read(from, max, usize::MAX, &mut buf, |o, m| {
            out.push((o, m.to_vec()))
        })
        .unwrap();
        out
    }

    #[test]
    fn append_read_and_exact_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kafka_log.txt");
        let mut log = Log::open(&path).unwrap();
        assert_eq!(log.stage(b"hello"), 0);
        assert_eq!(log.stage(b"world"), 1);
        assert_eq!(read_all(&mut log, 0, 10), vec![], "staged is not readable");
        assert_eq!(log.flush().unwrap(), 0..2);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"offset:0 message:hello\noffset:1 message:world\n"
        );
        assert_eq!(read_all(&mut log, 1, 10), vec![(1, b"world".to_vec())]);
        assert_eq!(read_all(&mut log, 2, 10), vec![]);
    }

    #[test]
    fn reopen_continues_offsets_and_reads_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let messages: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| format!("message {i} {}", "x".repeat((i % 50) as usize)).into_bytes())
            .collect();
        {
            let mut log = Log::open(&path).unwrap();
            for chunk in messages.chunks(777) {
                for m in chunk {
                    log.stage(m);
                }
                log.flush().unwrap();
            }
        }
        let mut log = Log::open(&path).unwrap();
        assert_eq!(log.next_offset(), 20_000);
        assert!(log.index.len() > 10, "index is sparse but present");
        assert!(log.index.len() < 20_000 / 10, "index is sparse");
        // Random access, sequential access and batches all agree.
        for o in [0u64, 1, 99, 4095, 12_345, 19_999] {
            assert_eq!(
                read_all(&mut log, o, 1),
                vec![(o, messages[o as usize].clone())]
            );
        }
        let all = read_all(&mut log, 0, usize::MAX);
        assert_eq!(all.len(), 20_000);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, (o, m))| *o == i as u64 && *m == messages[i])
        );
        assert_eq!(log.stage(b"next"), 20_000);
        log.flush().unwrap();
        assert_eq!(
            read_all(&mut log, 20_000, 5),
            vec![(20_000, b"next".to_vec())]
        );
    }

    #[test]
    fn read_respects_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path().join("log")).unwrap();
        for _ in 0..10 {
            log.stage(b"0123456789");
        }
        log.flush().unwrap();
        let mut buf = Vec::new();
        let mut n = 0;
        assert_eq!(
            log.read(2, 3, usize::MAX, &mut buf, |_, _| n += 1).unwrap(),
            5
        );
        assert_eq!(n, 3);
        n = 0;
        assert_eq!(log.read(0, 100, 25, &mut buf, |_, _| n += 1).unwrap(), 2);
        assert_eq!(n, 2);
        n = 0;
        assert_eq!(
            log.read(0, 100, 1, &mut buf, |_, _| n += 1).unwrap(),
            1,
            "at least one"
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn long_messages_cross_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path().join("log")).unwrap();
        let big = vec![b'a'; 300_000];
        log.stage(b"small");
        log.stage(&big);
        log.stage(b"after");
        log.flush().unwrap();
        assert_eq!(read_all(&mut log, 1, 1), vec![(1, big.clone())]);
        assert_eq!(read_all(&mut log, 2, 1), vec![(2, b"after".to_vec())]);
        let mut log = Log::open(dir.path().join("log")).unwrap();
        assert_eq!(log.next_offset(), 3);
        assert_eq!(read_all(&mut log, 0, 3).len(), 3);
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            b"offset:0 message:a\noffset:1 message:b\noffset:2 mess",
        )
        .unwrap();
        let mut log = Log::open(&path).unwrap();
        assert_eq!(log.next_offset(), 2);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"offset:0 message:a\noffset:1 message:b\n"
        );
        assert_eq!(log.stage(b"c"), 2);
        log.flush().unwrap();
        assert_eq!(read_all(&mut log, 2, 1), vec![(2, b"c".to_vec())]);
    }

    #[test]
    fn corrupt_middle_is_refused_and_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        for (content, line) in [
            (&b"offset:0 message:a\ngarbage\noffset:2 message:c\n"[..], 2),
            (b"offset:0 message:a\noffset:2 message:c\n", 2),
            (b"offset:1 message:a\n", 1),
            (b"offset:0 message:a\n\noffset:1 message:b\n", 2),
            (b"offset:0 message:a\noffset:01 message:b\n", 2),
            (b"offset:0 message:a\noffset:1message:b\n", 2),
        ] {
            std::fs::write(&path, content).unwrap();
            let err = Log::open(&path).unwrap_err();
            match &err {
                StorageError::Corrupt { line: l, .. } => assert_eq!(*l, line, "{err}"),
                other => panic!("expected corrupt, got {other}"),
            }
            assert!(
                err.to_string()
                    .starts_with(&format!("{}:{line}: ", path.display()))
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                content,
                "file left untouched"
            );
        }
    }

    #[test]
    fn failed_append_gives_offsets_back_and_leaves_no_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = Log::open(&path).unwrap();
        log.stage(b"kept");
        log.flush().unwrap();
        // Swap the file for /dev/full: every write fails with ENOSPC.
        let good = std::mem::replace(
            &mut log.file,
            OpenOptions::new().append(true).open("/dev/full").unwrap(),
        );
        assert_eq!(log.stage(b"lost"), 1);
        let err = log.flush().unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert_eq!(log.next_offset(), 1, "offset given back");
        log.file = good;
        log.dirty_tail = false;
        assert_eq!(log.stage(b"again"), 1);
        log.flush().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"offset:0 message:kept\noffset:1 message:again\n"
        );
    }
}
