//! The file formats ingestd knows, by the extension that names them: the one vocabulary the
//! configuration (`ingest.allowed_formats`), the catalog and the readers (`ingest::formats`)
//! share. Plain data, so the configuration can check its lists without depending on the readers.

/// A format the daemon reads, named by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Tsv,
    Xls,
    Xlsx,
    Xlsm,
    Parquet,
}

impl Format {
    /// The format an extension claims (case-insensitive), if it is one we know.
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "xls" => Format::Xls,
            "xlsx" => Format::Xlsx,
            "xlsm" => Format::Xlsm,
            "parquet" => Format::Parquet,
            _ => return None,
        })
    }

    /// Whether this build has a reader for the format; formats without one are not advertised
    /// as accepted. Every format named here has a reader now.
    pub fn readable(self) -> bool {
        true
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Xls => "xls",
            Format::Xlsx => "xlsx",
            Format::Xlsm => "xlsm",
            Format::Parquet => "parquet",
        }
    }
}
