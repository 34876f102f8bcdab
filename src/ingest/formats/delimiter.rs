//! Which delimiter a text table uses: each line of a sample votes with how often each candidate
//! occurs outside quoted fields, and the count most lines agree on wins. The CSV reader uses it
//! to read a file; `sniff` uses it to say what a text file named as something else really is.

/// Lines of the sample that vote on the delimiter.
const DELIMITER_SAMPLE_LINES: usize = 50;

/// Delimiters we detect, in the order that wins a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The candidate found the same non-zero number of times outside quotes on the most lines;
/// ties go to more columns, then to the order of [`DELIMITERS`]. `,` when none is found.
pub(super) fn detect_delimiter(sample: &[u8], complete: bool) -> u8 {
    delimiter_in(sample, complete).unwrap_or(b',')
}

/// The delimiter of [`detect_delimiter`], or `None` when no candidate occurs at all. Other
/// readers use it to say what a text file named as a spreadsheet really is.
pub(super) fn delimiter_in(sample: &[u8], complete: bool) -> Option<u8> {
    let lines = delimiter_counts(sample, complete);
    let mut best = None;
    let mut best_votes = (0, 0);
    for (i, &candidate) in DELIMITERS.iter().enumerate() {
        let (count, lines_agreeing) = modal_count(lines.iter().map(|counts| counts[i]));
        if (lines_agreeing, count) > best_votes {
            best = Some(candidate);
            best_votes = (lines_agreeing, count);
        }
    }
    best
}

/// Per sample line, how often each of [`DELIMITERS`] occurs outside quoted fields. Blank lines
/// are left out, and so is a last line the sample cut short.
fn delimiter_counts(sample: &[u8], complete: bool) -> Vec<[u32; 4]> {
    let mut lines = Vec::new();
    let mut counts = [0u32; 4];
    let (mut in_quotes, mut line_started, mut field_start) = (false, false, true);
    for &byte in sample {
        let at_field_start = field_start;
        field_start = false;
        if in_quotes {
            in_quotes = byte != b'"';
        } else if byte == b'\n' || byte == b'\r' {
            if line_started {
                lines.push(counts);
                if lines.len() == DELIMITER_SAMPLE_LINES {
                    return lines;
                }
            }
            (counts, line_started, field_start) = ([0; 4], false, true);
            continue;
        } else if let Some(i) = DELIMITERS.iter().position(|&d| d == byte) {
            counts[i] += 1;
            field_start = true;
        } else if byte == b'"' {
            // As in the csv crate, a quote opens a quoted field only at the start of a field.
            in_quotes = at_field_start;
        }
        line_started = true;
    }
    if complete && line_started {
        lines.push(counts);
    }
    lines
}

/// The most frequent non-zero value and how many times it occurs (larger value on a tie).
fn modal_count(values: impl Iterator<Item = u32>) -> (u32, usize) {
    let mut seen: Vec<(u32, usize)> = Vec::new();
    for value in values.filter(|&v| v > 0) {
        match seen.iter_mut().find(|(v, _)| *v == value) {
            Some((_, n)) => *n += 1,
            None => seen.push((value, 1)),
        }
    }
    seen.into_iter()
        .max_by_key(|&(value, n)| (n, value))
        .unwrap_or((0, 0))
}
