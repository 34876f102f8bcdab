//! Where a reader gets the bytes of its file: the one way every reader opens its input.
//!
//! In the daemon's own process (tests, benches) a reader opens the path it is given. In a
//! parse worker there is no path to open: the daemon opened the file and handed it over as an
//! inherited descriptor, and the worker's sandbox forbids opening anything at all (see
//! `isolate::sandbox`). The worker registers that descriptor here once, before any reader
//! runs, and from then on every "open" is a fresh duplicate of it, rewound to the start; the
//! path is only a label. This module never opens a path once an input is registered, and
//! never lets a reader see any file but the one it was given.
//!
//! Duplicates share one file offset. Readers open the file a few times in sequence (the sniff,
//! the package check, the read itself) and position every read by seeking first or by reading
//! from the start, so the shared offset is never relied on across two of them.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::sync::OnceLock;

/// The file a parse worker was handed, once registered.
static INHERITED: OnceLock<File> = OnceLock::new();

/// Make `file` the input of every reader in this process, whatever path it is asked to open.
/// Only a parse worker calls this, once; a second call is refused and returns the file.
pub fn inherit(file: File) -> Result<(), File> {
    INHERITED.set(file)
}

/// Open the input of a reader: the registered file, rewound, or else the file at `path`.
pub fn open(path: &Path) -> io::Result<File> {
    match INHERITED.get() {
        Some(file) => {
            let mut copy = file.try_clone()?;
            copy.seek(SeekFrom::Start(0))?;
            Ok(copy)
        }
        None => File::open(path),
    }
}
