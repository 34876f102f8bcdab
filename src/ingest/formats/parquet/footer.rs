//! The Parquet footer, looked at before the parquet crate parses it: its length, and whether it
//! declares an encryption algorithm.
//!
//! A file with encrypted columns but a plaintext footer starts and ends with `PAR1` like any
//! other; only field 8 of its `FileMetaData` (`encryption_algorithm`) tells. The parquet crate
//! reads that field only when built with its encryption feature (and a key-management
//! dependency we do not need), and without it fails later with a page-header error that names
//! nothing. So this module walks the footer's Thrift compact encoding itself, skipping every
//! value, bounded by the footer's length and a nesting limit.

use super::super::Rejection;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Structs nested deeper than this are not a real footer (Parquet's go about six deep).
const MAX_DEPTH: usize = 64;

/// The field of `FileMetaData` holding the encryption algorithm.
const ENCRYPTION_ALGORITHM: i16 = 8;

/// Whether the footer of a `PAR1` file declares column encryption. `size` is the file's size.
pub fn declares_encryption(file: &mut File, size: u64) -> Result<bool, Rejection> {
    let unreadable = |e: std::io::Error| Rejection::new(format!("it could not be read: {e}"));
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::End(-8)).map_err(unreadable)?;
    file.read_exact(&mut tail).map_err(unreadable)?;
    let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    // 4 bytes of leading magic, the footer, its length and the trailing magic.
    if length + 12 > size {
        return Err(Rejection::new(format!(
            "it is a damaged Parquet file: its footer claims {length} bytes but the file has \
             only {size}"
        )));
    }
    let mut footer = vec![0u8; length as usize];
    file.seek(SeekFrom::Start(size - 8 - length))
        .map_err(unreadable)?;
    file.read_exact(&mut footer).map_err(unreadable)?;
    let mut reader = Compact {
        bytes: &footer,
        at: 0,
    };
    // A footer this walk cannot follow is left to the parquet crate, which words the error.
    Ok(reader.top_level_has(ENCRYPTION_ALGORITHM).unwrap_or(false))
}

/// A cursor over Thrift compact-protocol bytes. Every method returns `None` on malformed input.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn skip_bytes(&mut self, n: u64) -> Option<()> {
        let end = self.at.checked_add(usize::try_from(n).ok()?)?;
        (end <= self.bytes.len()).then(|| self.at = end)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// Whether the outermost struct has a field with id `wanted`.
    fn top_level_has(&mut self, wanted: i16) -> Option<bool> {
        let mut last = 0i16;
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Some(false);
            }
            let id = self.field_id(header, last)?;
            if id == wanted {
                return Some(true);
            }
            self.skip(header & 0x0F, 0)?;
            last = id;
        }
    }

    fn field_id(&mut self, header: u8, last: i16) -> Option<i16> {
        match header >> 4 {
            0 => {
                let zigzag = self.varint()?;
                i16::try_from((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64)).ok()
            }
            delta => last.checked_add(i16::from(delta)),
        }
    }

    /// Skip one value of compact type `kind`.
    fn skip(&mut self, kind: u8, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match kind {
            // Booleans in a field header carry their value in the type.
            1 | 2 => Some(()),
            3 => self.skip_bytes(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip_bytes(8),
            8 => {
                let length = self.varint()?;
                self.skip_bytes(length)
            }
            9 | 10 => {
                let header = self.byte()?;
                let count = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.elements(header & 0x0F, count, depth)
            }
            11 => {
                let count = self.varint()?;
                if count == 0 {
                    return Some(());
                }
                let types = self.byte()?;
                for _ in 0..count {
                    self.element(types >> 4, depth)?;
                    self.element(types & 0x0F, depth)?;
                }
                Some(())
            }
            12 => {
                let mut last = 0i16;
                loop {
                    let header = self.byte()?;
                    if header == 0 {
                        return Some(());
                    }
                    last = self.field_id(header, last)?;
                    self.skip(header & 0x0F, depth + 1)?;
                }
            }
            _ => None,
        }
    }

    fn elements(&mut self, kind: u8, count: u64, depth: usize) -> Option<()> {
        // Every element takes at least one byte, so a count past the bytes left is malformed.
        if count > (self.bytes.len() - self.at) as u64 {
            return None;
        }
        for _ in 0..count {
            self.element(kind, depth)?;
        }
        Some(())
    }

    /// A list, set or map element: booleans take a byte here, unlike in field headers.
    fn element(&mut self, kind: u8, depth: usize) -> Option<()> {
        match kind {
            1 | 2 => self.skip_bytes(1),
            other => self.skip(other, depth + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_top_level_field_after_nested_ones() {
        // field 1 i32 = 1; field 2 list<struct{field 1 binary "ab"}> of 1; field 3 i64; field 8
        // struct {}.
        let bytes = [
            0x15, 0x02, // 1: i32 1
            0x19, 0x1C, 0x18, 0x02, b'a', b'b', 0x00, // 2: list of 1 struct { 1: "ab" }
            0x16, 0x04, // 3: i64 2
            0x5C, 0x00, // 8: struct {}
            0x00,
        ];
        let mut walk = Compact {
            bytes: &bytes,
            at: 0,
        };
        assert_eq!(walk.top_level_has(8), Some(true));
        let mut walk = Compact {
            bytes: &bytes[..11],
            at: 0,
        };
        assert_eq!(walk.top_level_has(8), None, "cut short");
        let nested = [0x1C; 200];
        let mut walk = Compact {
            bytes: &nested,
            at: 0,
        };
        assert_eq!(walk.top_level_has(8), None, "too deep");
    }
}
