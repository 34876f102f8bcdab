//! Nearest-row search over the PostgreSQL catalog's active vectors, through the HNSW index of
//! the query's identity. The same answer shape as the SQLite exact scan (`catalog::search`):
//! only vectors of the query's identity are compared, sources embedded by another model are
//! named, never mixed in.
//!
//! HNSW is approximate. `hnsw.ef_search` (candidates kept per search, `catalog.ef_search`)
//! trades speed for recall; [`DEFAULT_EF_SEARCH`] was chosen from the agreement test against
//! the exact scan (tests/e2e/pg/search.rs). A group filter is applied during the index scan with pgvector's
//! iterative scans, so a small group inside a large identity still gets its `k` rows. Rows
//! not in the index yet (`staging`) are scanned exactly and merged in.

use super::PgError;
use crate::embed::Identity;
use crate::protocol::{SearchHit, SearchResult};
use postgres::Client;

/// Candidates kept per search unless `catalog.ef_search` says otherwise (pgvector's default
/// is 40).
pub const DEFAULT_EF_SEARCH: u32 = crate::config::CatalogConfig::DEFAULT_EF_SEARCH;

/// The `k` active rows of `group` nearest to `query` (a unit vector made by `identity`).
pub fn search(
    client: &mut Client,
    group: &str,
    identity: &Identity,
    query: &[f32],
    k: usize,
    ef_search: u32,
) -> Result<SearchResult, PgError> {
    if query.len() != identity.dimension {
        return Err(PgError::Invalid(format!(
            "the query has {} dimensions, but {} {} makes {}",
            query.len(),
            identity.provider,
            identity.model,
            identity.dimension
        )));
    }
    let mut result = SearchResult {
        group: group.to_string(),
        model: format!("{} {}", identity.provider, identity.model),
        hits: Vec::new(),
        searched: 0,
        skipped: Vec::new(),
    };
    let mut tx = client.transaction()?;
    let Some(group_id) = tx
        .query_opt("SELECT id FROM groups WHERE name = $1", &[&group])?
        .map(|r| r.get::<_, i64>(0))
    else {
        return Ok(result);
    };
    let identity_id: Option<i32> = tx
        .query_opt(
            "SELECT id FROM identities
             WHERE provider = $1 AND model = $2 AND dimension = $3 AND weights_hash = $4",
            &[
                &identity.provider,
                &identity.model,
                &(identity.dimension as i32),
                &identity.weights_hash,
            ],
        )?
        .map(|r| r.get(0));
    // Active sources of the group embedded by another identity: named, not searched.
    for row in tx.query(
        "SELECT s.name, i.provider, i.model FROM generations n
         JOIN sources s ON s.id = n.source_id
         JOIN identities i ON i.id = n.identity_id
         WHERE n.state = 'active' AND s.group_id = $1 AND n.identity_id IS DISTINCT FROM $2
         ORDER BY s.name",
        &[&group_id, &identity_id],
    )? {
        let (source, provider, model): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        result.skipped.push(format!(
            "{source} is embedded with {provider} model {model}, not {} {}: re-embed it to \
             search it",
            identity.provider, identity.model
        ));
    }
    let Some(identity_id) = identity_id else {
        return Ok(result);
    };
    let searched: i64 = tx
        .query_one(
            "SELECT COALESCE(SUM(n.rows), 0)::BIGINT FROM generations n
             JOIN sources s ON s.id = n.source_id
             WHERE n.state = 'active' AND s.group_id = $1 AND n.identity_id = $2",
            &[&group_id, &identity_id],
        )?
        .get(0);
    result.searched = searched as u64;
    if k == 0 || searched == 0 {
        return Ok(result);
    }
    // SET LOCAL takes no parameters; both values are integers we hold.
    tx.batch_execute(&format!(
        "SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = relaxed_order",
        ef_search.max(k as u32).min(1000)
    ))?;
    let dimension = identity.dimension;
    // Two halves: the rows in the index, and the staged rows the indexing pass has not moved
    // in yet (`staging`), scanned exactly. In the first the ORDER BY expression is exactly the
    // identity's index expression and `NOT staged` its predicate, so the planner uses that
    // index; relaxed order may return neighbours slightly out of order, so the outer query
    // sorts the k of each half and keeps k.
    let half = |staged: &str| {
        format!(
            "(SELECT s.name AS source, v.version_no, x.row_no, x.text,
                     x.embedding::vector({dimension}) <=> $1::vector({dimension}) AS distance
              FROM vectors x
              JOIN generations n ON n.id = x.generation_id AND n.state = 'active'
              JOIN sources s ON s.id = n.source_id
              JOIN versions v ON v.id = n.version_id
              WHERE x.identity_id = $2 AND x.group_id = $3 AND {staged}
              ORDER BY x.embedding::vector({dimension}) <=> $1::vector({dimension})
              LIMIT $4)"
        )
    };
    let sql = format!(
        "SELECT source, version_no, row_no, text, distance FROM (
             {} UNION ALL {}
         ) nearest
         ORDER BY distance, source, row_no
         LIMIT $4",
        half("NOT x.staged"),
        half("x.staged")
    );
    let query = pgvector::Vector::from(query.to_vec());
    for row in tx.query(&sql, &[&query, &identity_id, &group_id, &(k as i64)])? {
        let distance: f64 = row.get(4);
        result.hits.push(SearchHit {
            source: row.get(0),
            version: format!("v{}", row.get::<_, i64>(1)),
            row: row.get::<_, i64>(2) as u64,
            score: (1.0 - distance) as f32,
            text: row.get(3),
        });
    }
    tx.commit()?;
    Ok(result)
}
