//! The shared fixture corpus, for the readers' tests: real files written by other people's
//! tools, described one per line in `MANIFEST.tsv`. Tests skip (with a message) when the
//! corpus is not checked out beside the repository.

use std::path::{Path, PathBuf};

/// The corpus folder, or `None` (and a message) when it is absent.
pub fn dir() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/corpus"
    ));
    if !dir.is_dir() {
        crate::testing::skip(&format!("no fixture corpus at {}", dir.display()));
        return None;
    }
    Some(dir.to_path_buf())
}

/// One line of `MANIFEST.tsv`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the corpus folder.
    pub path: String,
    /// What the file really is, by its bytes ("ZIP: OOXML spreadsheet").
    pub kind: String,
    pub note: String,
}

/// Every line of the manifest.
pub fn manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("read MANIFEST.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("manifest header").split('\t').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("manifest has no {name} column"))
    };
    let (path, kind, note) = (column("path"), column("type"), column("note"));
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or("").to_string();
            Entry {
                path: field(path),
                kind: field(kind),
                note: field(note),
            }
        })
        .collect()
}

/// Files of the manifest whose extension (lower-cased) is one of `extensions`.
pub fn with_extension(dir: &Path, extensions: &[&str]) -> Vec<Entry> {
    manifest(dir)
        .into_iter()
        .filter(|entry| {
            Path::new(&entry.path)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect()
}
