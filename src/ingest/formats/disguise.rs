//! Whether what a file really is fits the extension it was dropped with, and if not, the reason
//! a person can act on: what it is, and what to do (rename it, decompress it, save it again).
//!
//! The one place that decides which disguises are accepted by reading what the file really is.
//! Today that is a single case: an XLSX package named `.xlsm` (a workbook without macros is a
//! valid macro-enabled workbook that happens to have none). The reverse, a macro-enabled
//! workbook named `.xlsx`, is refused: `.xlsx` promises that there are no macros, and Excel
//! itself refuses to open such a file.

use super::sniff::Kind;
use super::{Format, Rejection};

/// `Ok` when a file named as `format` may be read as `kind`; otherwise why not.
///
/// Text and binary content pass for CSV and TSV: the CSV reader looks closer (encodings, NUL
/// bytes) and words its own reasons.
pub fn check(format: Format, kind: &Kind) -> Result<(), Rejection> {
    let fits = match format {
        Format::Csv | Format::Tsv => matches!(kind, Kind::Text { .. } | Kind::Binary | Kind::Empty),
        Format::Xls => matches!(kind, Kind::Xls | Kind::OleUnreadable(_)),
        Format::Xlsx => matches!(kind, Kind::Xlsx),
        Format::Xlsm => matches!(kind, Kind::Xlsm | Kind::Xlsx),
        Format::Parquet => matches!(kind, Kind::Parquet),
    };
    if fits {
        Ok(())
    } else {
        Err(Rejection::new(reason(format, kind)))
    }
}

/// The format a file claims to be, after "not": "not a CSV file".
fn noun(format: Format) -> &'static str {
    match format {
        Format::Csv => "a CSV file",
        Format::Tsv => "a TSV file",
        Format::Xls => "an XLS workbook",
        Format::Xlsx => "an XLSX workbook",
        Format::Xlsm => "an XLSM workbook",
        Format::Parquet => "a Parquet file",
    }
}

fn is_spreadsheet(format: Format) -> bool {
    matches!(format, Format::Xls | Format::Xlsx | Format::Xlsm)
}

/// The extension a file of this kind should have, when we accept that kind under it.
fn real_extension(kind: &Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Xls => "xls",
        Kind::Xlsx => "xlsx",
        Kind::Xlsm => "xlsm",
        Kind::Parquet => "parquet",
        Kind::Text {
            delimiter: Some(b'\t'),
        } => "tsv",
        Kind::Text { delimiter: Some(_) } => "csv",
        _ => return None,
    })
}

fn reason(format: Format, kind: &Kind) -> String {
    let (what, not, ext) = (kind.what(), noun(format), format.as_str());
    match kind {
        Kind::XlsEncrypted | Kind::EncryptedPackage => {
            "it is an encrypted (password-protected) workbook; save it without a password".into()
        }
        Kind::ParquetEncrypted => {
            "it is an encrypted Parquet file (Parquet modular encryption); write it without \
             encryption"
                .into()
        }
        Kind::Gzip | Kind::Zstd | Kind::Xz | Kind::Bzip2 => {
            format!("it is {what}; decompress it first")
        }
        Kind::Ods => "it is an OpenDocument spreadsheet (.ods), which is not accepted; save it \
                      as .xlsx or .csv"
            .into(),
        Kind::Xlsb => "it is an Excel binary workbook (.xlsb), which is not accepted; save it as \
                       .xlsx"
            .into(),
        Kind::BareBiff(version) => format!(
            "it is an Excel {version} worksheet, a format too old to read; open it in Excel and \
             save it as .xlsx"
        ),
        Kind::Html if is_spreadsheet(format) => format!(
            "it is an HTML page saved with a .{ext} name (an 'Excel export' from a web app); \
             open it in Excel and save as .xlsx"
        ),
        Kind::SpreadsheetXml if is_spreadsheet(format) => format!(
            "it is an Excel 2003 XML spreadsheet (SpreadsheetML) saved with a .{ext} name; open \
             it in Excel and save as .xlsx"
        ),
        Kind::SpreadsheetXml => {
            format!("it is {what}, not {not}; open it in Excel and save as .xlsx")
        }
        Kind::Text { delimiter: Some(_) } if is_spreadsheet(format) => format!(
            "it is {what} saved with a .{ext} name (a common 'Excel export' from web apps); \
             rename it to .{}",
            real_extension(kind).unwrap_or("csv")
        ),
        Kind::Xls | Kind::Xlsx | Kind::Xlsm if is_spreadsheet(format) => format!(
            "it is {what} named .{ext}; rename it to .{}",
            real_extension(kind).unwrap_or(ext)
        ),
        Kind::OleUnreadable(error) => {
            format!("it is a damaged Office (OLE2) file, not {not} ({error})")
        }
        Kind::OleOther => format!("it is an Office (OLE2) file with no workbook in it, not {not}"),
        Kind::OoxmlIncomplete => "it is an incomplete XLSX package (a ZIP archive without \
                                  [Content_Types].xml); open it in Excel and save it again"
            .into(),
        Kind::ZipDamaged(error) => {
            format!("it is a damaged or truncated ZIP archive, not {not} ({error})")
        }
        Kind::Zip if is_spreadsheet(format) => {
            format!("it is a ZIP archive with no workbook in it, not {not}")
        }
        Kind::Zip => format!("it is a ZIP archive, not {not}; unzip it first"),
        Kind::ParquetNoHead => "it is a damaged Parquet file: it does not start with the \
                                Parquet signature (PAR1)"
            .into(),
        Kind::ParquetTruncated => {
            "it is a truncated Parquet file: it ends before its footer".into()
        }
        Kind::Binary if format == Format::Parquet => {
            "it is not a Parquet file: it does not end with the Parquet signature (PAR1)".into()
        }
        Kind::Binary => format!("it is not {not}: its content matches no known file format"),
        Kind::Empty => "it is empty".into(),
        _ => match real_extension(kind) {
            Some(real) => format!("it is {what}, not {not}; rename it to .{real}"),
            None => format!("it is {what}, not {not}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn reasons_name_what_the_file_is() {
        let tab = Kind::Text { delimiter: Some(b'\t') };
        let comma = Kind::Text { delimiter: Some(b',') };
        let cases: &[(Format, Kind, &str)] = &[
            (Format::Csv, Kind::Pdf, "it is a PDF document, not a CSV file"),
            (Format::Xls, Kind::Xlsx, "it is an XLSX workbook (a ZIP package) named .xls; rename it to .xlsx"),
            (Format::Xlsx, Kind::Xlsm, "it is a macro-enabled workbook (.xlsm) named .xlsx; rename it to .xlsm"),
            (Format::Xlsx, Kind::Xls, "it is an XLS workbook (Excel 97-2003) named .xlsx; rename it to .xls"),
            (Format::Xlsx, Kind::EncryptedPackage,
                "it is an encrypted (password-protected) workbook; save it without a password"),
            (Format::Xls, Kind::XlsEncrypted, "it is an encrypted (password-protected) workbook"),
            (Format::Parquet, Kind::ArrowIpc, "it is an Arrow IPC file, not a Parquet file"),
            (Format::Xlsx, Kind::Ods, "it is an OpenDocument spreadsheet (.ods), which is not accepted"),
            (Format::Xlsx, Kind::Xlsb, "it is an Excel binary workbook (.xlsb), which is not accepted"),
            (Format::Xls, Kind::Html, "it is an HTML page saved with a .xls name (an 'Excel export' \
                from a web app); open it in Excel and save as .xlsx"),
            (Format::Xls, Kind::SpreadsheetXml, "it is an Excel 2003 XML spreadsheet (SpreadsheetML) \
                saved with a .xls name"),
            (Format::Csv, Kind::Gzip, "it is gzip-compressed data; decompress it first"),
            (Format::Csv, Kind::Zstd, "it is zstd-compressed data; decompress it first"),
            (Format::Xls, tab, "it is tab-separated text saved with a .xls name (a common 'Excel \
                export' from web apps); rename it to .tsv"),
            (Format::Parquet, comma, "it is CSV text, not a Parquet file; rename it to .csv"),
            (Format::Csv, Kind::Parquet, "it is a Parquet file, not a CSV file; rename it to .parquet"),
            (Format::Xls, Kind::WordDoc, "it is a Word document (.doc), not an XLS workbook"),
            (Format::Xlsx, Kind::Png, "it is a PNG image, not an XLSX workbook"),
            (Format::Csv, Kind::Xlsx, "it is an XLSX workbook (a ZIP package), not a CSV file; rename it to .xlsx"),
            (Format::Xls, Kind::BareBiff("4.0 (BIFF4)"), "it is an Excel 4.0 (BIFF4) worksheet, a format too old"),
        ];
        for (format, kind, want) in cases {
            let got = check(*format, kind).expect_err(want).reason;
            assert!(got.starts_with(want), "{format:?} {kind:?}: {got}");
        }
    }

    #[test]
    fn matching_content_passes() {
        let cases: &[(Format, Kind)] = &[
            (Format::Csv, Kind::Text { delimiter: None }),
            (Format::Tsv, Kind::Binary),
            (Format::Xls, Kind::Xls),
            (Format::Xls, Kind::OleUnreadable("bad sector".into())),
            (Format::Xlsx, Kind::Xlsx),
            (Format::Xlsm, Kind::Xlsm),
            (Format::Xlsm, Kind::Xlsx),
            (Format::Parquet, Kind::Parquet),
        ];
        for (format, kind) in cases {
            assert_eq!(check(*format, kind), Ok(()), "{format:?} {kind:?}");
        }
    }
}
