//! Columns people recognise, end to end: a legacy-encoded CSV with a preamble dropped into a
//! real daemon is read with its real header and encoding, `ingestctl show` says how both were
//! found, and the rows handed to embedding start below that header.

use crate::helper::Daemon;

/// A Shift_JIS CSV with a title and two blank lines above its header, as a Japanese Excel
/// writes it ("Save as CSV" keeps the code page).
fn shift_jis_report() -> Vec<u8> {
    let mut text = String::from("売上報告\n,,\n,,\n名前,年齢,住所\n");
    for (name, age, city) in [
        ("山田太郎", 30, "東京都千代田区"),
        ("鈴木花子", 41, "大阪府大阪市北区"),
        ("佐藤次郎", 25, "北海道札幌市中央区"),
        ("高橋美咲", 37, "福岡県福岡市博多区"),
    ] {
        text.push_str(&format!("{name},{age},{city}\n"));
    }
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!unmappable);
    bytes.into_owned()
}

#[test]
fn show_says_where_the_header_is_and_which_encoding_was_detected() {
    let daemon = Daemon::start();
    daemon.drop_file("sales", "report.csv", &shift_jis_report());
    let source = daemon.wait_stored("sales", "report.csv");
    assert_eq!(source.columns, ["名前", "年齢", "住所"]);
    assert_eq!(source.rows, Some(4));

    let out = daemon.ctl(&["show", "-g", "sales", "report.csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  header   on line 4 (3 rows above it skipped: a title, 2 blank)\n"),
        "{text}"
    );
    assert!(text.contains("  encoding Shift_JIS (detected, "), "{text}");
    assert!(text.contains("Columns (3): 名前, 年齢, 住所\n"), "{text}");

    let json = daemon.ctl_json(&["show", "-g", "sales", "report.csv"]);
    let reading = &json["versions"][0]["reading"];
    assert_eq!(reading["encoding"], "Shift_JIS", "{json}");
    assert_eq!(reading["encoding_found_by"], "detected", "{json}");
    assert_eq!(reading["header_row"], 4, "{json}");
    assert_eq!(
        reading["rows_above"],
        serde_json::json!(["title", "blank", "blank"]),
        "{json}"
    );

    // The rows embedding reads start below the detected header.
    let preview = daemon.ctl_json(&["show", "-g", "sales", "report.csv", "--preview", "1"]);
    let first = preview["preview"][0].as_str().expect("a preview row");
    assert!(first.contains("山田太郎"), "{first}");
    assert!(!first.contains("売上報告"), "{first}");
}

#[test]
fn a_csv_whose_text_no_encoding_reads_is_rejected_with_the_reason() {
    let daemon = Daemon::start();
    // Control bytes among bytes that are not UTF-8: text in no encoding.
    let mut bytes = b"name,city\n".to_vec();
    for _ in 0..30 {
        bytes.extend_from_slice(b"a\x01\x02\xe9\x03b,c\x81\x04\x9d\n");
    }
    daemon.drop_file("g", "broken.csv", &bytes);
    let source = daemon.wait_settled("g", "broken.csv");
    match source.reason {
        Some(reason) => assert!(reason.contains("save it as UTF-8"), "{reason}"),
        None => panic!("accepted as {:?}", source.columns),
    }
}

/// A CSV that is plain ASCII for more than the first 64 KiB and has one Windows-1252 byte
/// further down: the encoding is only found where that byte is, by a second look at the file
/// from there. That look happens inside the sandboxed parse worker, which may open nothing.
#[test]
fn a_late_windows_1252_byte_is_read_in_the_sandboxed_worker() {
    let daemon = Daemon::start();
    // Long rows, so that the last one is within the rows a preview may show.
    let note = "n".repeat(100);
    let mut bytes = b"name,city,note\n".to_vec();
    let mut rows = 1;
    while bytes.len() < 70 * 1024 {
        bytes.extend_from_slice(format!("person {rows},Paris,{note}\n").as_bytes());
        rows += 1;
    }
    // "José" in Windows-1252: é is the single byte 0xE9, invalid as UTF-8.
    bytes.extend_from_slice(b"Jos\xe9,Lyon,x\n");
    daemon.drop_file("g", "late.csv", &bytes);
    let source = daemon.wait_settled("g", "late.csv");
    assert_eq!(source.reason, None, "rejected");
    assert_eq!(source.columns, ["name", "city", "note"]);
    assert_eq!(source.rows, Some(rows));

    let preview = daemon.ctl_json(&[
        "show",
        "-g",
        "g",
        "late.csv",
        "--preview",
        &rows.to_string(),
    ]);
    let all = preview["preview"].to_string();
    assert!(all.contains("José"), "{all}");
    let json = daemon.ctl_json(&["show", "-g", "g", "late.csv"]);
    assert_eq!(
        json["versions"][0]["reading"]["encoding"], "windows-1252",
        "{json}"
    );
}
