//! File calls shared by every journal.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Writes all of `data` with as few `write` calls as the kernel allows
/// (`Write::write_all` would also do, but this keeps `WriteZero` and
/// `Interrupted` handling explicit in one place for both journals).
pub fn write_all(mut file: &File, data: &[u8]) -> io::Result<()> {
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

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}
