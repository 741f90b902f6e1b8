//! The recovery checkpoint: for every partition, an offset up to which its
//! log is known to have been synced.
//!
//! A log that ends before its checkpoint lost data that was on disk (a
//! truncated, replaced or deleted file, a flipped newline at the end that
//! looks like a torn write), and the broker refuses to start on it rather
//! than silently reuse acknowledged offsets. The checkpoint is rewritten
//! (on a helper thread: temp file, `fsync`, rename) when synced offsets
//! moved and at least a second passed, and at a clean shutdown, so damage
//! to the last second of data before a crash cannot be told from a torn
//! write.
//!
//! # File format (`recovery.checkpoint`)
//! ```text
//! kafka-like-broker recovery checkpoint 1
//! <topic> <partition> <offset>
//! ...
//! crc32c <8 hex digits: CRC-32C of every byte before this line>
//! ```
//! A first line naming another version is refused: a later format gets a
//! new number and a reader of its own.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use super::{Location, StorageError, crc32c};
use crate::util::{is_valid_name, parse_u64, push_u64};

pub const CHECKPOINT_FILE: &str = "recovery.checkpoint";
const FIRST_LINE: &str = "kafka-like-broker recovery checkpoint ";
const VERSION: u64 = 1;

/// (topic, partition) -> synced offset.
pub type Checkpoint = HashMap<(Box<[u8]>, u32), u64>;

/// Reads the checkpoint in `dir` (empty if there is none).
pub fn read(dir: &Path) -> Result<Checkpoint, StorageError> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::new()),
        Err(e) => return Err(StorageError::io(&path, "read", e)),
    };
    let bad = |line: u64, why: &str| StorageError::corrupt(&path, Location::Line(line), why);
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let version = first
        .strip_prefix(FIRST_LINE.as_bytes())
        .and_then(parse_u64)
        .ok_or_else(|| bad(1, "not a recovery checkpoint"))?;
    if version != VERSION {
        return Err(bad(
            1,
            &format!("checkpoint version {version} is not supported (this broker reads {VERSION})"),
        ));
    }
    let crc_at = bytes
        .windows(8)
        .rposition(|w| w == b"\ncrc32c ")
        .ok_or_else(|| bad(0, "no checksum line"))?
        + 1;
    let crc_line = &bytes[crc_at + 7..];
    let crc_line = crc_line.strip_suffix(b"\n").unwrap_or(crc_line);
    let expected = std::str::from_utf8(crc_line)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| bad(0, "unreadable checksum line"))?;
    if crc32c(&bytes[..crc_at]) != expected {
        return Err(bad(0, "checksum mismatch"));
    }
    let mut map = Checkpoint::new();
    let body = &bytes[first.len() + 1..crc_at];
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(|&b| b == b' ');
        let entry = (|| {
            let (topic, p, o) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || !is_valid_name(topic) {
                return None;
            }
            let p = u32::try_from(parse_u64(p)?).ok()?;
            Some(((topic.into(), p), parse_u64(o)?))
        })();
        let (key, offset) =
            entry.ok_or_else(|| bad(i as u64 + 2, "expected <topic> <partition> <offset>"))?;
        map.insert(key, offset);
    }
    Ok(map)
}

/// The file bytes for `entries`.
pub fn encode<'a>(entries: impl Iterator<Item = (&'a [u8], u32, u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(FIRST_LINE.as_bytes());
    push_u64(&mut out, VERSION);
    out.push(b'\n');
    let mut sorted: Vec<_> = entries.collect();
    sorted.sort();
    for (topic, partition, offset) in sorted {
        out.extend_from_slice(topic);
        out.push(b' ');
        push_u64(&mut out, u64::from(partition));
        out.push(b' ');
        push_u64(&mut out, offset);
        out.push(b'\n');
    }
    let crc = crc32c(&out);
    out.extend_from_slice(format!("crc32c {crc:08x}\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        let bytes = encode([(&b"default"[..], 0, 40), (b"orders", 2, 7)].into_iter());
        let path = dir.path().join(CHECKPOINT_FILE);
        fs::write(&path, &bytes).unwrap();
        let map = read(dir.path()).unwrap();
        assert_eq!(map.get(&(b"default"[..].into(), 0)), Some(&40));
        assert_eq!(map.get(&(b"orders"[..].into(), 2)), Some(&7));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(read_bytes(dir.path(), &bad).is_err(), "flip at {i}");
        }
        let future = String::from_utf8(bytes)
            .unwrap()
            .replace("checkpoint 1", "checkpoint 2");
        let err = read_bytes(dir.path(), future.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    fn read_bytes(dir: &Path, bytes: &[u8]) -> Result<Checkpoint, StorageError> {
        fs::write(dir.join(CHECKPOINT_FILE), bytes).unwrap();
        read(dir)
    }
}
