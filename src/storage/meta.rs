//! Small metadata files: the data directory's `broker.meta` (its layout
//! version, the cluster id, the default topic's id) and each topic's
//! `topic.meta` (its id, partition count and record format).
//!
//! ```text
//! # kafka-like-broker data directory; do not edit
//! layout=2
//! cluster_id=Qm4rzT0sSbe1R1bKq7w2jg
//! default_topic_id=3e6b1f4c0a9d4e57b2c81f6d0e9a7b35
//! producer_ids_from=1871265480298086400
//! ```
//!
//! `key=value` lines; `#` starts a comment; unknown keys are refused (a
//! newer broker wrote them). Layouts:
//! - none (no file): written before layouts existed. Rolled segments may
//!   lack an index; one is built at start, and damage anywhere is refused.
//! - 1: a rolled segment's index is written only once its data is on
//!   disk, so after a crash the newest segments without one may be cut at
//!   their first damage (see `storage::log`).
//! - 2: topics have a `topic.meta` (partitions, format, id), partitions
//!   after the first live in `topics/<name>/partition-<n>/`, and the
//!   cluster has a persisted id.
//!
//! Older layouts are migrated in place at start (a `topic.meta` is
//! written for each text topic of one partition, ids are made). A layout
//! newer than [`LAYOUT`] is refused with a message saying so. Every file
//! here is replaced atomically (temp file, sync, rename, directory sync).

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use super::format::Format;
use super::{Location, StorageError, replace_file, sync_dir};

pub const META_FILE: &str = "broker.meta";
pub const TOPIC_META_FILE: &str = "topic.meta";
/// The layout this broker writes.
pub const LAYOUT: u32 = 2;

/// What `broker.meta` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMeta {
    /// `None`: the directory predates layouts (or is new).
    pub layout: Option<u32>,
    pub cluster_id: Option<String>,
    pub default_topic_id: Option<[u8; 16]>,
    /// Every producer id handed out so far is below this (ids are
    /// reserved in blocks, this written before any id of a block is used).
    pub producer_ids_from: Option<i64>,
}

/// What a topic's `topic.meta` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: [u8; 16],
    pub partitions: u32,
    pub format: Format,
}

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// A `key=value` line: (line number, key, value).
type KeyValue = (u64, String, String);

fn lines(path: &Path) -> Result<Option<Vec<KeyValue>>, StorageError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, "read", e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            StorageError::corrupt(path, Location::Line(i as u64 + 1), "expected key=value")
        })?;
        out.push((i as u64 + 1, k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Some(out))
}

/// Reads `broker.meta` in `dir` (all `None` if there is none).
pub fn read_broker(dir: &Path) -> Result<BrokerMeta, StorageError> {
    let path = dir.join(META_FILE);
    let mut meta = BrokerMeta {
        layout: None,
        cluster_id: None,
        default_topic_id: None,
        producer_ids_from: None,
    };
    let Some(lines) = lines(&path)? else {
        return Ok(meta);
    };
    for (n, k, v) in lines {
        let bad = |why: String| StorageError::corrupt(&path, Location::Line(n), why);
        match k.as_str() {
            "layout" => {
                let layout: u32 = v.parse().map_err(|_| bad("bad layout number".into()))?;
                if layout > LAYOUT {
                    return Err(bad(format!(
                        "the data directory has layout {layout}, written by a newer broker; \
                         this one reads layouts up to {LAYOUT}"
                    )));
                }
                meta.layout = Some(layout);
            }
            "cluster_id" => {
                if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(bad("bad cluster_id".into()));
                }
                meta.cluster_id = Some(v);
            }
            "default_topic_id" => {
                meta.default_topic_id = Some(parse_id(&v).ok_or_else(|| bad("bad id".into()))?)
            }
            "producer_ids_from" => {
                meta.producer_ids_from = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| bad("bad producer_ids_from".into()))?,
                )
            }
            other => {
                return Err(bad(format!(
                    "unknown key {other:?} (written by a newer broker?)"
                )));
            }
        }
    }
    if meta.layout.is_none() {
        return Err(StorageError::corrupt(
            &path,
            Location::File,
            "no layout= line",
        ));
    }
    Ok(meta)
}

/// Writes `broker.meta` for layout [`LAYOUT`].
pub fn write_broker(
    dir: &Path,
    cluster_id: &str,
    default_topic_id: &[u8; 16],
    producer_ids_from: i64,
) -> Result<(), StorageError> {
    let path = dir.join(META_FILE);
    let text = format!(
        "# kafka-like-broker data directory; do not edit\nlayout={LAYOUT}\ncluster_id={cluster_id}\n\
         default_topic_id={}\nproducer_ids_from={producer_ids_from}\n",
        hex(default_topic_id)
    );
    replace_file(&path, text.as_bytes()).map_err(|e| StorageError::io(&path, "write", e))?;
    sync_dir(dir)
}

/// Reads a topic's `topic.meta` in its directory (`None` if there is none).
pub fn read_topic(dir: &Path) -> Result<Option<TopicMeta>, StorageError> {
    let path = dir.join(TOPIC_META_FILE);
    let Some(lines) = lines(&path)? else {
        return Ok(None);
    };
    let (mut id, mut partitions, mut format) = (None, None, None);
    for (n, k, v) in lines {
        let bad = |why: String| StorageError::corrupt(&path, Location::Line(n), why);
        match k.as_str() {
            "id" => id = Some(parse_id(&v).ok_or_else(|| bad("bad id".into()))?),
            "partitions" => {
                partitions = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|p| (1..=MAX_PARTITIONS).contains(p))
                        .ok_or_else(|| bad(format!("partitions must be 1 to {MAX_PARTITIONS}")))?,
                )
            }
            "format" => {
                format = Some(
                    Format::from_name(&v)
                        .ok_or_else(|| bad("format must be text or batch".into()))?,
                )
            }
            other => {
                return Err(bad(format!(
                    "unknown key {other:?} (written by a newer broker?)"
                )));
            }
        }
    }
    match (id, partitions, format) {
        (Some(id), Some(partitions), Some(format)) => Ok(Some(TopicMeta {
            id,
            partitions,
            format,
        })),
        _ => Err(StorageError::corrupt(
            &path,
            Location::File,
            "id, partitions and format are all needed",
        )),
    }
}

/// Writes a topic's `topic.meta` in its directory and syncs the directory.
pub fn write_topic(dir: &Path, meta: &TopicMeta) -> Result<(), StorageError> {
    write_topic_unsynced(dir, meta)?;
    sync_dir(dir)
}

/// Writes a topic's `topic.meta` (its content synced) without syncing the
/// directory: the caller makes the directory's sync a condition of
/// anything in the topic counting as durable.
pub fn write_topic_unsynced(dir: &Path, meta: &TopicMeta) -> Result<(), StorageError> {
    let path = dir.join(TOPIC_META_FILE);
    let text = format!(
        "# kafka-like-broker topic; do not edit\nid={}\npartitions={}\nformat={}\n",
        hex(&meta.id),
        meta.partitions,
        meta.format.name()
    );
    replace_file(&path, text.as_bytes()).map_err(|e| StorageError::io(&path, "write", e))
}

/// 16 random bytes (ids), from the kernel.
pub fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let read = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id));
    if read.is_err() {
        // No /dev/urandom: the time and pid, enough to tell ids apart here.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id[..12].copy_from_slice(&nanos.to_le_bytes()[..12]);
        id[12..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    id
}

/// A Kafka-style cluster id: 16 random bytes as 22 characters of
/// URL-safe base64.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = random_id();
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for b in id {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

pub fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_and_topic_meta_round_trip_and_future_layouts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_broker(dir.path()).unwrap().layout, None);
        let cluster = new_cluster_id();
        assert_eq!(cluster.len(), 22);
        let id = random_id();
        write_broker(dir.path(), &cluster, &id, 1 << 40).unwrap();
        let meta = read_broker(dir.path()).unwrap();
        assert_eq!(meta.layout, Some(LAYOUT));
        assert_eq!(meta.cluster_id.as_deref(), Some(cluster.as_str()));
        assert_eq!(meta.default_topic_id, Some(id));
        assert_eq!(meta.producer_ids_from, Some(1 << 40));
        fs::write(dir.path().join(META_FILE), "layout=99\n").unwrap();
        let err = read_broker(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("layout 99") && err.contains("newer broker"),
            "{err}"
        );
        fs::write(dir.path().join(META_FILE), "layout=1\n").unwrap();
        assert_eq!(read_broker(dir.path()).unwrap().layout, Some(1));

        let t = TopicMeta {
            id,
            partitions: 3,
            format: Format::Batch,
        };
        assert_eq!(read_topic(dir.path()).unwrap(), None);
        write_topic(dir.path(), &t).unwrap();
        assert_eq!(read_topic(dir.path()).unwrap(), Some(t));
        fs::write(dir.path().join(TOPIC_META_FILE), "partitions=0\n").unwrap();
        assert!(read_topic(dir.path()).is_err());
    }
}
