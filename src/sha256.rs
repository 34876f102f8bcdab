//! Hex sha256, streamed: the digest the catalog records for each stored version (and that
//! recovery and `fsck` check files against), and the pins of the embedding model's files.
//! One place, so a stored file and a fetched model are hashed and written alike.

use sha2::{Digest, Sha256};
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Lower-case hex sha256 of everything `reader` yields, read a megabyte at a time.
pub fn of_reader(reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut BufReader::with_capacity(1 << 20, reader), &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// [`of_reader`] of the file at `path`.
pub fn of_file(path: &Path) -> io::Result<String> {
    of_reader(std::fs::File::open(path)?)
}

/// Lower-case hex sha256 of `bytes`.
pub fn of_bytes(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn the_known_digest_of_abc_from_bytes_readers_and_files() {
        assert_eq!(of_bytes(b"abc"), ABC);
        assert_eq!(of_reader(&b"abc"[..]).unwrap(), ABC);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.csv"), b"abc").unwrap();
        assert_eq!(of_file(&tmp.path().join("a.csv")).unwrap(), ABC);
        assert_eq!(
            of_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_reader_longer_than_the_buffer_is_hashed_whole() {
        let data: Vec<u8> = (0..3_000_000usize).map(|i| (i % 251) as u8).collect();
        assert_eq!(of_reader(&data[..]).unwrap(), of_bytes(&data));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = of_file(&tmp.path().join("none")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
