use super::*;
use crate::ingest::columns::BLANK_HEADER;
use crate::ingest::formats::corpus;
use crate::protocol::SkippedColumn;
use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::Compression;
use ::parquet::file::properties::WriterProperties;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use std::io::Write;

fn read_bytes(bytes: &[u8], options: &ReadOptions) -> Result<Extracted, Rejection> {
    let mut file = tempfile::Builder::new()
        .suffix(".parquet")
        .tempfile()
        .expect("temp file");
    file.write_all(bytes).expect("write");
    extract(file.path(), options)
}

/// A Parquet file of `rows` rows in row groups of `group` rows, with the given column names.
fn parquet_of(names: &[&str], rows: i64, group: usize) -> Vec<u8> {
    let columns: Vec<(&str, ArrayRef)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let array: ArrayRef = if i % 2 == 0 {
                Arc::new(Int64Array::from_iter_values(0..rows))
            } else {
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|r| format!("row {r}")),
                ))
            };
            (*name, array)
        })
        .collect();
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    out
}

fn skip(position: usize, reason: &str) -> SkippedColumn {
    SkippedColumn {
        position,
        reason: reason.to_string(),
    }
}

#[test]
fn written_files_are_read_and_counted() {
    let bytes = parquet_of(
        &["id", "name", " id ", "", "__index_level_0__"],
        10_000,
        3000,
    );
    let got = read_bytes(&bytes, &ReadOptions::default()).expect("read");
    assert_eq!(got.columns, ["id", "name", "id_2"]);
    assert_eq!(got.skipped, [skip(4, BLANK_HEADER), skip(5, PANDAS_INDEX)]);
    assert_eq!(got.rows, 10_000);
    assert!(got.notes[0].starts_with("4 row groups, compression SNAPPY, written by parquet-rs"));
}

#[test]
fn decompressed_size_is_capped_from_the_footer() {
    let bytes = parquet_of(&["id", "name"], 50_000, 50_000);
    let options = ReadOptions {
        max_unzipped_bytes: 100_000,
        ..ReadOptions::default()
    };
    let refused = read_bytes(&bytes, &options).unwrap_err();
    assert!(
        refused
            .reason
            .starts_with("it expands past 100.0 kB when decompressed"),
        "{}",
        refused.reason
    );
}

#[test]
fn corrupt_and_truncated_footers_are_named() {
    let good = parquet_of(&["id", "name"], 100, 100);
    let length = u32::from_le_bytes(good[good.len() - 8..good.len() - 4].try_into().unwrap());
    let footer_start = good.len() - 8 - length as usize;

    let mut scrambled = good.clone();
    for byte in &mut scrambled[footer_start..footer_start + 24] {
        *byte = 0xFF;
    }
    let refused = read_bytes(&scrambled, &ReadOptions::default()).unwrap_err();
    assert!(
        refused.reason.starts_with("its footer cannot be read: "),
        "{}",
        refused.reason
    );

    let mut too_long = good.clone();
    let at = too_long.len() - 8;
    too_long[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let refused = read_bytes(&too_long, &ReadOptions::default()).unwrap_err();
    assert!(
        refused
            .reason
            .contains("its footer claims 4294967295 bytes"),
        "{}",
        refused.reason
    );

    let refused = read_bytes(&good[..good.len() - 20], &ReadOptions::default()).unwrap_err();
    assert_eq!(
        refused.reason,
        "it is a truncated Parquet file: it ends before its footer"
    );

    let mut headless = good.clone();
    headless[..4].copy_from_slice(b"\xF3\x0E\xFF\xFF");
    let refused = read_bytes(&headless, &ReadOptions::default()).unwrap_err();
    assert!(
        refused
            .reason
            .contains("does not start with the Parquet signature"),
        "{}",
        refused.reason
    );

    // Damage inside the data pages: the footer is fine, reading the row group is not.
    let mut pages = good;
    for byte in &mut pages[4..footer_start.min(200)] {
        *byte ^= 0x5A;
    }
    let refused = read_bytes(&pages, &ReadOptions::default()).unwrap_err();
    assert!(
        refused
            .reason
            .starts_with("row group 1 of 1 cannot be read"),
        "{}",
        refused.reason
    );
}

/// (file, columns, rows)
type Case = (&'static str, &'static [&'static str], u64);

#[test]
#[rustfmt::skip]
fn corpus_columns_follow_our_rules() {
    let Some(dir) = corpus::dir() else { return };
    let matrix: &[&str] = &["plain", "plain_random", "nested_nulls.string", "nested_nulls.int", "list"];
    let alltypes: &[&str] = &["id", "bool_col", "tinyint_col", "smallint_col", "int_col", "bigint_col",
        "float_col", "double_col", "date_string_col", "string_col", "timestamp_col"];
    let cases: &[Case] = &[
        ("fastparquet/test-data/decimals.parquet", &["PatId", "EventDate", "weight measure:WEIGHT(KG, 0)"], 10),
        ("parquet-testing/data/nonnullable.impala.parquet",
            &["ID", "Int_Array", "int_array_array", "Int_Map.key", "Int_Map.value", "int_map_array.key",
              "int_map_array.value", "nested_Struct.a", "nested_Struct.B", "nested_Struct.c.D.e", "nested_Struct.c.D.f",
              "nested_Struct.G.key", "nested_Struct.G.value.h.i"], 1),
        ("parquet-testing/data/alltypes_plain.parquet", alltypes, 8),
        ("parquet-testing/data/alltypes_dictionary.parquet", alltypes, 2),
        ("parquet-testing/data/list_columns.parquet", &["int64_list", "utf8_list"], 3),
        ("parquet-testing/data/nested_maps.snappy.parquet", &["a.key", "a.value.key", "a.value.value", "b", "c"], 6),
        ("parquet-testing/data/old_list_structure.parquet", &["a"], 1),
        ("parquet-testing/data/repeated_no_annotation.parquet",
            &["id", "phoneNumbers.phone.number", "phoneNumbers.phone.kind"], 6),
        ("parquet-testing/data/map_no_value.parquet", &["my_map.key", "my_map.value", "my_map_no_v.key", "my_list"], 3),
        ("parquet-testing/data/lz4_raw_compressed.parquet", &["c0", "c1", "v11"], 4),
        ("parquet-testing/data/byte_stream_split.zstd.parquet", &["f32", "f64"], 300),
        ("parquet-testing/data/geospatial/geospatial.parquet", &["group", "wkt", "geometry"], 196),
        ("duckdb/data/parquet-testing/struct.parquet", &["inner.str_field", "inner.f64_field"], 2),
        ("duckdb/data/parquet-testing/nullbyte.parquet", &["42", "hello world"], 1),
        ("duckdb/data/parquet-testing/compression/generated/data_page=1_BROTLI.parquet", matrix, 30),
        ("duckdb/data/parquet-testing/compression/generated/data_page=1_GZIP.parquet", matrix, 30),
        ("duckdb/data/parquet-testing/compression/generated/data_page=1_SNAPPY.parquet", matrix, 30),
        ("duckdb/data/parquet-testing/compression/generated/data_page=1_ZSTD.parquet", matrix, 30),
        ("duckdb/data/parquet-testing/empty-group/empty_group_test.parquet", &["id", "optional_data"], 1),
        ("fastparquet/test-data/map-test.snappy.parquet", &["topics.key", "topics.value"], 3551),
        ("frictionless-py/data/table.parq", &["id", "name"], 2),
    ];
    for (file, columns, rows) in cases {
        let got = extract(&dir.join(file), &ReadOptions::default())
            .unwrap_or_else(|r| panic!("{file}: rejected: {}", r.reason));
        assert_eq!(got.columns, *columns, "{file}");
        assert_eq!(got.rows, *rows, "{file}");
    }
    let silly = extract(&dir.join("duckdb/data/parquet-testing/silly-names.parquet"), &ReadOptions::default())
        .expect("silly names");
    assert_eq!(silly.columns, ["önë", "🦆"]);
    assert_eq!(silly.skipped, [skip(2, BLANK_HEADER)]);
    let wide = extract(&dir.join("parquet-testing/data/nested_structs.rust.parquet"), &ReadOptions::default())
        .expect("nested structs");
    assert_eq!((wide.columns.len(), wide.columns[0].as_str()), (216, "roll_num.min"));
    let lineitem = extract(&dir.join("duckdb/data/parquet-testing/lineitem-top10000.gzip.parquet"), &ReadOptions::default())
        .expect("lineitem");
    assert_eq!((lineitem.columns.len(), lineitem.rows), (16, 10_000));
}

#[test]
#[rustfmt::skip]
fn corpus_files_that_are_refused_say_why() {
    let Some(dir) = corpus::dir() else { return };
    let encrypted = "it is an encrypted Parquet file";
    let cases: &[(&str, &str)] = &[
        ("parquet-testing/data/uniform_encryption.parquet.encrypted", encrypted),
        ("parquet-testing/data/encrypt_columns_plaintext_footer.parquet.encrypted", encrypted),
        ("duckdb/data/parquet-testing/encryption/encrypted_column.parquet", encrypted),
        ("duckdb/data/parquet-testing/encryption/encrypted_footer.parquet", encrypted),
        ("parquet-testing/data/large_string_map.brotli.parquet", "it expands past 1.0 GB when decompressed"),
        ("parquet-testing/bad_data/PARQUET-1481.parquet", "its footer cannot be read"),
        ("parquet-testing/bad_data/ARROW-GH-41321.parquet", "row group 1 of 2 cannot be read"),
        ("parquet-testing/bad_data/ARROW-GH-45185.parquet", "row group 1 of 1 cannot be read"),
        ("parquet-testing/bad_data/ARROW-GH-47662.parquet", "row group 1 of 1 cannot be read"),
        ("duckdb/data/parquet-testing/rle_malicious_bitwidth.parquet", "row group 1 of 1 cannot be read"),
        ("duckdb/data/parquet-testing/page_size_corruption.parquet", "row group 1 of 1 cannot be read"),
        ("duckdb/data/parquet-testing/broken/issue22325_datapage_v2_zero_compressed_size.parquet",
            "row group 1 of 1 cannot be read: snappy"),
        ("arrow-testing/data/parquet/fuzzing/clusterfuzz-testcase-minimized-parquet-arrow-fuzz-5662105355419648.parquet",
            "it is a damaged Parquet file: it does not start with the Parquet signature"),
        ("arrow-testing/data/parquet/fuzzing/clusterfuzz-testcase-dictbitwidth-4680774947569664.parquet",
            "its footer cannot be read"),
        ("fastparquet/test-data/no_columns.parquet", "it has no columns"),
        ("fastparquet/test-data/split/_metadata.parquet", "it is a Parquet summary file"),
    ];
    for (file, want) in cases {
        let refused = extract(&dir.join(file), &ReadOptions::default()).expect_err(file);
        assert!(refused.reason.starts_with(want), "{file}: {}", refused.reason);
    }
}

#[test]
fn every_corpus_parquet_file_gives_columns_or_a_reason() {
    let Some(dir) = corpus::dir() else { return };
    let files = corpus::with_extension(&dir, &["parquet", "parq", "encrypted"]);
    assert!(files.len() > 60, "only {} files", files.len());
    for entry in files {
        let path = dir.join(&entry.path);
        match crate::ingest::formats::extract(Format::Parquet, &path, &ReadOptions::default()) {
            Ok(got) => assert!(!got.columns.is_empty(), "{}: no columns", entry.path),
            Err(r) => assert!(
                !r.reason.trim().is_empty() && !r.reason.contains("reader failed"),
                "{}: {}",
                entry.path,
                r.reason
            ),
        }
    }
}
