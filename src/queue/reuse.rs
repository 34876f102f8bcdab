//! Which rows of a job go to the provider, and which reuse a vector the source already has.
//!
//! A text is embedded at most once per source and identity: a row whose text (by its
//! [`text_hash`](crate::catalog::jobs::text_hash)) is in the source's active generation, in a
//! generation kept from an earlier try of this job, or earlier in this job, is copied from
//! there. This module only decides; the catalog copies the vector, so it never passes through
//! memory here. It never compares vectors of two identities: the catalog hands it only texts
//! of the job's own identity.
//!
//! Memory: one entry (hash, generation, row; about 40 bytes with the table's slack) per
//! distinct text of the source, about 20 MB for a 500,000-row file.

use crate::catalog::jobs::Origin;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

pub(super) struct Reuse {
    known: HashMap<[u8; 16], Origin>,
    /// The generation this job writes: where its own first occurrences live.
    generation: i64,
    /// Rows copied, rows sent to the provider.
    pub reused: u64,
    pub embedded: u64,
}

impl Reuse {
    pub fn new(known: Vec<([u8; 16], Origin)>, generation: i64) -> Self {
        Self {
            known: known.into_iter().collect(),
            generation,
            reused: 0,
            embedded: 0,
        }
    }

    /// Where row `row` with text hash `hash` can copy its vector from, or `None` if its text
    /// is new and must be embedded. A new text is remembered at once, so a later row with the
    /// same text copies this row (which the writer stores first: rows are written in order).
    pub fn origin(&mut self, hash: [u8; 16], row: u64) -> Option<Origin> {
        match self.known.entry(hash) {
            Entry::Occupied(known) => {
                self.reused += 1;
                Some(*known.get())
            }
            Entry::Vacant(new) => {
                new.insert((self.generation, row));
                self.embedded += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::jobs::text_hash;

    #[test]
    fn known_texts_and_repeats_within_the_job_are_copied_new_ones_embedded() {
        let old = (7, 3);
        let mut reuse = Reuse::new(vec![(text_hash("kept"), old)], 9);
        assert_eq!(reuse.origin(text_hash("kept"), 1), Some(old));
        assert_eq!(reuse.origin(text_hash("new"), 2), None);
        assert_eq!(
            reuse.origin(text_hash("new"), 5),
            Some((9, 2)),
            "the job's own first occurrence"
        );
        assert_eq!(reuse.origin(text_hash("other"), 6), None);
        assert_eq!((reuse.reused, reuse.embedded), (2, 2));
    }

    #[test]
    fn hashes_tell_texts_apart_and_are_stable() {
        assert_ne!(text_hash("a"), text_hash("b"));
        assert_ne!(text_hash("a"), text_hash("a "));
        // The stored hash must not change between releases: vectors written by one are
        // reused by the next.
        assert_eq!(
            text_hash("abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23
            ]
        );
    }
}
