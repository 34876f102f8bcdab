//! Which names are valid groups and which file names are ignored: the rules the daemon's
//! watcher classifies by and `ingestctl add` checks before it copies anything, defined once so
//! the two can never disagree (DESIGN §2, §3 step 1).
//!
//! Pure functions of a name. Classifying paths under the drop root is the daemon's
//! (`watch::names`), which builds on these.

/// Longest group name.
pub const MAX_GROUP_NAME: usize = 64;

/// A group name is 1–64 of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a group name is not valid, for messages.
pub fn group_name_problem(name: &str) -> String {
    format!(
        "{name:?} is not a valid group name: use 1 to {MAX_GROUP_NAME} letters, digits, '.', '_' \
         or '-', not starting with '.'"
    )
}

/// Hidden and temporary names that writers and editors leave behind.
pub fn is_ignored_name(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[".tmp", ".part", ".crdownload", ".swp"];
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with("~$")
        || name.ends_with('~')
        || SUFFIXES.iter().any(|s| lower.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        for ok in ["sales", "Q1.2026", "a", "a-b_c", &"x".repeat(64)] {
            assert!(valid_group_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a b",
            "ü",
            "a/b",
            &"x".repeat(65),
            "semi;colon",
        ] {
            assert!(!valid_group_name(bad), "{bad}");
        }
        assert!(group_name_problem("a b").contains("not a valid group name"));
    }

    #[test]
    fn ignored_names() {
        for ignored in [
            ".x.csv",
            "~$book.xlsx",
            "a.csv.tmp",
            "a.PART",
            "a.crdownload",
            ".a.swp",
            "a.csv~",
        ] {
            assert!(is_ignored_name(ignored), "{ignored}");
        }
        for taken in ["sales.csv", "tmp.csv", "part.xlsx", "a~b.csv"] {
            assert!(!is_ignored_name(taken), "{taken}");
        }
    }
}
