//! Exact nearest-row search over a group's active embeddings, behind one small function.
//!
//! It reads through the `active_vectors` view on a read-only connection of its own (WAL lets
//! it run beside the catalog thread's writes), so a search never holds up ingestion. Only
//! vectors of the query's identity are compared; sources embedded by another model are named,
//! never mixed in. A scan of every vector is fine at this product's scale (100k rows × 384
//! floats is a few tens of milliseconds); an index can replace this function without
//! changing its callers.

use super::CatalogError;
use crate::embed::{Identity, cosine};
use crate::protocol::{SearchHit, SearchResult};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;

/// A hit ordered by score, for the bounded heap.
struct Ranked(SearchHit);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .score
            .total_cmp(&other.0.score)
            // Ties: earlier source, version and row first.
            .then_with(|| other.0.source.cmp(&self.0.source))
            .then_with(|| other.0.row.cmp(&self.0.row))
    }
}

/// Decode a stored vector (little-endian f32s).
pub fn decode(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The `k` active rows of `group` nearest to `query` (a unit vector made by `identity`).
pub fn search(
    database: &Path,
    group: &str,
    identity: &Identity,
    query: &[f32],
    k: usize,
) -> Result<SearchResult, CatalogError> {
    let conn = super::schema::open_reader(database)?;
    let mut stmt = conn.prepare(
        "SELECT source, version_no, row_no, text, embedding, provider, model, dimension,
                weights_hash
         FROM active_vectors WHERE group_name = ?1",
    )?;
    let mut rows = stmt.query([group])?;
    let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
    let mut searched = 0u64;
    let mut others: BTreeMap<String, String> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let source: String = r.get(0)?;
        let same = r.get_ref(5)?.as_str().ok() == Some(identity.provider.as_str())
            && r.get_ref(6)?.as_str().ok() == Some(identity.model.as_str())
            && r.get::<_, i64>(7)? == identity.dimension as i64
            && r.get_ref(8)?.as_str().ok() == Some(identity.weights_hash.as_str());
        if !same {
            if let std::collections::btree_map::Entry::Vacant(entry) = others.entry(source) {
                let (provider, model): (String, String) = (r.get(5)?, r.get(6)?);
                entry.insert(format!("{provider} model {model}"));
            }
            continue;
        }
        searched += 1;
        let rusqlite::types::ValueRef::Blob(blob) = r.get_ref(4)? else {
            continue;
        };
        let score = cosine(query, &decode(blob));
        if best.len() == k
            && best
                .peek()
                .is_some_and(|Reverse(worst)| worst.0.score >= score)
        {
            continue;
        }
        best.push(Reverse(Ranked(SearchHit {
            source,
            version: format!("v{}", r.get::<_, i64>(1)?),
            row: r.get::<_, i64>(2)? as u64,
            score,
            text: r.get(3)?,
        })));
        if best.len() > k {
            best.pop();
        }
    }
    let mut hits: Vec<Ranked> = best.into_iter().map(|Reverse(r)| r).collect();
    hits.sort_by(|a, b| b.cmp(a));
    Ok(SearchResult {
        group: group.to_string(),
        model: format!("{} {}", identity.provider, identity.model),
        hits: hits.into_iter().map(|r| r.0).collect(),
        searched,
        skipped: others
            .into_iter()
            .map(|(source, by)| {
                format!(
                    "{source} is embedded with {by}, not {} {}: re-embed it to search it",
                    identity.provider, identity.model
                )
            })
            .collect(),
    })
}
