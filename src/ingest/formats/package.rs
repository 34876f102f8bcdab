//! The ZIP container of an XLSX workbook, checked before any part of it is parsed.
//!
//! Only the central directory is read (plus the first bytes of the shared-strings part), so a
//! ZIP bomb is refused from what it declares, in milliseconds, before a decompressor runs. The
//! declared sizes can be trusted that far: the zip crate stops any entry that inflates past its
//! declared size, so a part cannot grow beyond what is checked here.
//!
//! It never decides what the package is (that is [`super::sniff`]) and never reads cells.

use super::Rejection;
use std::io::{BufReader, Read};
use std::path::Path;

/// Parts a workbook package may have. Real workbooks have tens, or a few thousand with many
/// sheets and images; each entry costs memory in every reader that lists the archive.
const MAX_PARTS: usize = 100_000;

/// Deflate cannot compress better than about 1032:1, and XML cells (each with its own
/// reference) stay far below that. A part declaring more is made to be a bomb.
const MAX_RATIO: u64 = 1000;

/// Parts smaller than this are not judged by their ratio: tiny parts compress oddly.
const RATIO_FLOOR: u64 = 1 << 20;

/// How much of the shared-strings part is read to find its declared count.
const SST_HEAD: u64 = 4096;

/// Refuse a package whose parts expand past `max_unzipped` bytes, whose compression ratio no
/// workbook has, or that declares more shared strings than its part can hold.
pub fn check(path: &Path, max_unzipped: u64) -> Result<(), Rejection> {
    let file = super::input::open(path)
        .map_err(|e| Rejection::new(format!("it could not be read: {e}")))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        Rejection::new(format!(
            "it is a damaged or truncated ZIP archive, not an XLSX workbook ({e})"
        ))
    })?;
    if archive.has_duplicate_names() {
        // Readers disagree on which of two same-named parts they read; refuse to guess.
        return Err(Rejection::new(
            "its ZIP archive holds two parts with the same name, which readers resolve \
             differently; open it in Excel and save it again",
        ));
    }
    if archive.len() > MAX_PARTS {
        return Err(Rejection::new(format!(
            "it has {} parts; a workbook has at most a few thousand",
            archive.len()
        )));
    }
    let mut total: u64 = 0;
    let mut shared_strings = None;
    for index in 0..archive.len() {
        let Ok(entry) = archive.by_index_data(index) else {
            continue;
        };
        let (size, packed) = (entry.size(), entry.compressed_size());
        total = total.saturating_add(size);
        let name = String::from_utf8_lossy(entry.name_raw()).replace('\\', "/");
        if size > RATIO_FLOOR && size / packed.max(1) > MAX_RATIO {
            return Err(Rejection::new(format!(
                "its part {name} claims to expand {} times (from {} to {}), far more than any \
                 workbook compresses; it looks like a ZIP bomb",
                size / packed.max(1),
                human(packed),
                human(size)
            )));
        }
        if name.to_ascii_lowercase().ends_with("sharedstrings.xml") {
            shared_strings = Some((index, size));
        }
    }
    if total > max_unzipped {
        return Err(Rejection::new(format!(
            "it expands past {} when unzipped ({} in {} parts)",
            human(max_unzipped),
            human(total),
            archive.len()
        )));
    }
    if let Some((index, size)) = shared_strings {
        check_shared_strings(&mut archive, index, size)?;
    }
    Ok(())
}

/// Readers reserve room for the `uniqueCount` a shared-strings part declares before reading
/// it; each string takes at least a few bytes of XML (`<si/>`), so a count the part cannot hold
/// is a request for memory, not a description of the workbook.
fn check_shared_strings<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    index: usize,
    size: u64,
) -> Result<(), Rejection> {
    let mut head = Vec::new();
    if let Ok(entry) = archive.by_index(index) {
        // A part that cannot be read here fails in the reader, with its own reason.
        let _ = entry.take(SST_HEAD).read_to_end(&mut head);
    }
    let Some(count) = unique_count(&head) else {
        return Ok(());
    };
    if count > (size / 4).max(4096) {
        return Err(Rejection::new(format!(
            "its shared-strings part declares {count} strings but holds only {}; it looks \
             made to exhaust memory",
            human(size)
        )));
    }
    Ok(())
}

/// The `uniqueCount` attribute of the `<sst>` element, if it is in `head`.
fn unique_count(head: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(head);
    let start = text.find("<sst")?;
    let element = &text[start..];
    let element = &element[..element.find('>')?];
    let value = element.split("uniqueCount=").nth(1)?;
    let value = value.trim_start_matches(['"', '\'']);
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    // More digits than a u64 holds is a count no part can hold either.
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// A size as people read it: "1.0 GB".
pub fn human(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().si().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::formats::sniff::tests::zip_of;
    use std::io::Write;

    fn check_bytes(bytes: &[u8], max: u64) -> Result<(), Rejection> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(bytes).expect("write");
        check(file.path(), max)
    }

    #[test]
    fn declared_sizes_are_capped_before_parsing() {
        let sheet = "<row><c><v>1</v></c></row>".repeat(400_000);
        let package = zip_of(&[("xl/worksheets/sheet1.xml", sheet.as_bytes())]);
        assert!(package.len() < sheet.len() / 50, "compresses well");
        check_bytes(&package, 1_000_000_000).expect("under the cap");
        let refused = check_bytes(&package, 5_000_000).expect_err("over the cap");
        assert_eq!(
            refused.reason,
            "it expands past 5.0 MB when unzipped (10.4 MB in 1 parts)"
        );
    }

    #[test]
    fn shared_string_counts_must_fit_their_part() {
        let honest =
            r#"<?xml version="1.0"?><sst count="2" uniqueCount="2"><si><t>a</t></si></sst>"#;
        let greedy = r#"<sst xmlns="x" count="1" uniqueCount="4000000000"><si><t>a</t></si></sst>"#;
        let overflow = r#"<sst uniqueCount="99999999999999999999999"></sst>"#;
        let part = "xl/sharedStrings.xml";
        check_bytes(&zip_of(&[(part, honest.as_bytes())]), 1 << 30).expect("honest");
        for sst in [greedy, overflow] {
            let refused = check_bytes(&zip_of(&[(part, sst.as_bytes())]), 1 << 30);
            let reason = refused.expect_err(sst).reason;
            assert!(reason.contains("made to exhaust memory"), "{reason}");
        }
        assert_eq!(unique_count(b"<sst count='3' uniqueCount='7'>"), Some(7));
        assert_eq!(unique_count(b"<sst count=\"3\">"), None);
    }
}
