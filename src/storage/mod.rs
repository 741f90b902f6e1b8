//! Files only: the segmented message logs and the committed-offsets store.
//! Nothing here knows about sockets or wire protocols.

mod error;
pub mod log;
pub mod offsets;

pub use error::{StorageError, sync_dir};
pub use log::{Log, LogOptions, SYNC_SLOTS, SyncDone, SyncPoint};
pub use offsets::Offsets;
