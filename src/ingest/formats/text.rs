//! Text below the table: which encoding a delimited file is in, and the streams that turn it
//! into checked UTF-8 for the csv reader.
//!
//! Owns the byte-order marks, the detection of legacy encodings (Shift_JIS, windows-1250, …)
//! with chardetng, the detector Firefox uses, the NUL-byte diagnosis of files that are not text,
//! and two streaming decoders (checked UTF-8 and UTF-32). It decides nothing about delimiters or
//! rows, and never holds more than one buffer of a file.

use super::Rejection;
use chardetng::EncodingDetector;
use encoding_rs::{UTF_16BE, UTF_16LE};
use encoding_rs_io::DecodeReaderBytesBuilder;
use std::fs::File;
use std::io::{self, BufRead, Cursor, Read};
use std::path::Path;

/// How much of the start of a file decides binary or text, the encoding and the delimiter.
pub(super) const SNIFF_BYTES: usize = 64 * 1024;

/// The text encoding of a file, as decided from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
    /// Not UTF-8, and detected from the bytes: in the first bytes (`from_line` 0) or further
    /// down, where the file stopped being UTF-8. `confident` is the detector's own verdict.
    Detected {
        encoding: &'static encoding_rs::Encoding,
        confident: bool,
        from_line: u64,
    },
    /// Set for the source (`ingestctl set --encoding`): read in it, whatever the bytes look
    /// like; `bom` bytes of its own byte-order mark start the file.
    Set {
        encoding: &'static encoding_rs::Encoding,
        bom: u64,
    },
}

/// Byte-order marks. UTF-32 LE's starts like UTF-16 LE's, so it comes first.
const BOMS: &[(&[u8], Encoding)] = &[
    (b"\xEF\xBB\xBF", Encoding::Utf8Bom),
    (b"\xFF\xFE\x00\x00", Encoding::Utf32Le),
    (b"\x00\x00\xFE\xFF", Encoding::Utf32Be),
    (b"\xFF\xFE", Encoding::Utf16Le),
    (b"\xFE\xFF", Encoding::Utf16Be),
];

impl Encoding {
    /// The encoding's name, as the WHATWG Encoding Standard spells it ("Shift_JIS").
    pub(super) fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 | Encoding::Utf8Bom => "UTF-8",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
            Encoding::Utf32Le => "UTF-32LE",
            Encoding::Utf32Be => "UTF-32BE",
            Encoding::Detected { encoding, .. } | Encoding::Set { encoding, .. } => encoding.name(),
        }
    }

    /// How it was found: "byte-order mark", "valid UTF-8", "detected".
    pub(super) fn how(self) -> &'static str {
        match self {
            Encoding::Utf8 => "valid UTF-8",
            Encoding::Detected { .. } => "detected",
            Encoding::Set { .. } => "set",
            _ => "byte-order mark",
        }
    }

    /// The detector's confidence, for a detected encoding.
    pub(super) fn confidence(self) -> Option<&'static str> {
        match self {
            Encoding::Detected {
                confident: true, ..
            } => Some("high"),
            Encoding::Detected { .. } => Some("low"),
            _ => None,
        }
    }

    pub(super) fn note(self) -> String {
        let name = match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with BOM",
            Encoding::Utf16Le => "UTF-16LE with BOM",
            Encoding::Utf16Be => "UTF-16BE with BOM",
            Encoding::Utf32Le => "UTF-32LE with BOM",
            Encoding::Utf32Be => "UTF-32BE with BOM",
            Encoding::Detected {
                encoding,
                confident,
                from_line,
            } => {
                let confidence = if confident { "high" } else { "low" };
                let from = match from_line {
                    0 => "the file is not valid UTF-8".to_string(),
                    line => format!("line {line} is the first that is not valid UTF-8"),
                };
                return format!(
                    "encoding {} (detected, {confidence} confidence; {from})",
                    encoding.name()
                );
            }
            Encoding::Set { encoding, .. } => {
                return format!("encoding {} (set for this source)", encoding.name());
            }
        };
        format!("encoding {name}")
    }
}

/// The legacy encoding `bytes` are most likely in (chardetng, without UTF-8, since they are
/// not UTF-8), checked by decoding them: bytes that are not text in the best guess either are
/// a rejection rather than a table of mojibake. `last`: `bytes` run to the end of the file.
pub(super) fn guess(bytes: &[u8], last: bool, from_line: u64) -> Result<Encoding, Rejection> {
    let mut detector = EncodingDetector::new();
    detector.feed(bytes, last);
    let (encoding, confident) = detector.guess_assess(None, false);
    // A sample cut by the buffer may end inside a character: check whole lines only.
    let whole = if last {
        bytes
    } else {
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        &bytes[..end]
    };
    let unreadable = |what: &str| {
        Rejection::new(format!(
            "its text cannot be read: it is not UTF-8, and {what} {} (the closest guess); save \
             it as UTF-8",
            encoding.name()
        ))
    };
    let Some(text) = encoding.decode_without_bom_handling_and_without_replacement(whole) else {
        return Err(unreadable("not valid"));
    };
    // Control characters are what bytes outside a code page decode to (windows-1252 maps its
    // five holes to C1 controls): text that holds them was not written in this encoding.
    if text.chars().any(is_stray_control) {
        return Err(unreadable("it holds control characters as"));
    }
    Ok(Encoding::Detected {
        encoding,
        confident,
        from_line,
    })
}

/// A control character no text file holds: C1 controls, and C0 controls other than tab, line
/// breaks, form feed and the old end-of-file mark.
fn is_stray_control(c: char) -> bool {
    matches!(c, '\u{80}'..='\u{9F}')
        || (c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0C' | '\x1A'))
}

/// [`guess`] from the bytes at `offset` on, where a file that began as ASCII stopped being
/// UTF-8 (on line `line`).
pub(super) fn guess_from(path: &Path, offset: u64, line: u64) -> Result<Encoding, Rejection> {
    let unreadable = |e: io::Error| Rejection::new(format!("it could not be read: {e}"));
    let mut file = super::input::open(path).map_err(unreadable)?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(offset)).map_err(unreadable)?;
    let mut bytes = Vec::with_capacity(SNIFF_BYTES);
    file.take(SNIFF_BYTES as u64)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    guess(&bytes, bytes.len() < SNIFF_BYTES, line)
}

/// The encoding set for the source, checked on the first bytes as a detected one is: bytes
/// that do not decode in it, or decode to control characters, refuse the file rather than
/// read it as mojibake. Its own byte-order mark, if the file starts with one, is skipped.
pub(super) fn set(
    encoding: &'static encoding_rs::Encoding,
    head: &[u8],
) -> Result<Encoding, Rejection> {
    let bom = match encoding_rs::Encoding::for_bom(head) {
        Some((found, length)) if found == encoding => length,
        _ => 0,
    };
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let bytes = &head[bom..];
    let mut text = String::with_capacity(bytes.len() * 3);
    // A sample cut by the buffer may end inside a character: that is not an error.
    let last = head.len() < SNIFF_BYTES;
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut text, last);
    let unreadable = |what: &str| {
        let line = 1 + line_breaks(&bytes[..read.min(bytes.len())], 0);
        Rejection::new(format!(
            "line {line} cannot be read as {}, the encoding set for this source: {what}; set \
             another encoding or clear it (ingestctl set --clear)",
            encoding.name()
        ))
    };
    if let encoding_rs::DecoderResult::Malformed(..) = result {
        return Err(unreadable("it is not valid there"));
    }
    if let Some(at) = text.find(is_stray_control) {
        let line = 1 + text[..at].matches('\n').count();
        return Err(Rejection::new(format!(
            "line {line} cannot be read as {}, the encoding set for this source: it decodes to \
             control characters there; set another encoding or clear it (ingestctl set --clear)",
            encoding.name()
        )));
    }
    Ok(Encoding::Set {
        encoding,
        bom: bom as u64,
    })
}

/// Decide from the first bytes whether the file is text, and in which encoding. `kind` is
/// "CSV" or "TSV", as the file was taken for.
pub(super) fn detect(head: &[u8], kind: &str) -> Result<Encoding, Rejection> {
    let bom = BOMS.iter().find(|(bom, _)| head.starts_with(bom));
    // In UTF-16 and UTF-32 text NUL bytes are normal; in any 8-bit text they are not.
    match bom {
        Some((_, Encoding::Utf8Bom)) | None if head.contains(&0) => {
            return Err(Rejection::new(not_text(head, kind)));
        }
        Some((_, encoding)) => return Ok(*encoding),
        None => {}
    }
    match std::str::from_utf8(head) {
        Ok(_) => Ok(Encoding::Utf8),
        // A character cut in two by the end of the sample is not an error.
        Err(e) if e.error_len().is_none() && head.len() == SNIFF_BYTES => Ok(Encoding::Utf8),
        Err(_) => guess(head, head.len() < SNIFF_BYTES, 0),
    }
}

/// Why a start with NUL bytes and no BOM is not text, as precisely as is cheap to say.
fn not_text(head: &[u8], kind: &str) -> String {
    let nuls = head.iter().filter(|&&b| b == 0).count();
    let even = head.iter().step_by(2).filter(|&&b| b == 0).count();
    let lopsided = even.max(nuls - even) * 10 >= nuls * 9;
    if nuls * 4 >= head.len() && lopsided {
        return "it looks like UTF-16 text without a byte-order mark (BOM); save it as UTF-8"
            .into();
    }
    let controls = head
        .iter()
        .filter(|&&b| b != 0 && b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
        .count();
    if nuls <= 16 && controls == 0 {
        // Text with a few stray NULs (a bad export): say where, so it can be cleaned.
        let first = head.iter().position(|&b| b == 0).unwrap_or(0);
        let line = 1 + head[..first].iter().filter(|&&b| b == b'\n').count();
        return format!(
            "line {line} contains a NUL byte (0x00), which {kind} text never holds; \
             remove it and drop the file again"
        );
    }
    format!("its content is binary, not text (a {kind} file must be text)")
}

/// The file as UTF-8 bytes, starting with the (already read) head.
pub(super) fn decoded(encoding: Encoding, head: Vec<u8>, file: File) -> Box<dyn Read> {
    let bom = match encoding {
        Encoding::Utf8Bom => 3,
        Encoding::Set { bom, .. } => bom,
        _ => 0,
    };
    let mut start = Cursor::new(head);
    start.set_position(bom);
    let source = start.chain(file);
    let transcode_from = match encoding {
        Encoding::Utf8 | Encoding::Utf8Bom => return Box::new(CheckedUtf8::new(source, bom)),
        Encoding::Utf32Le => return Box::new(Utf32ToUtf8::new(source, true)),
        Encoding::Utf32Be => return Box::new(Utf32ToUtf8::new(source, false)),
        Encoding::Utf16Le => UTF_16LE,
        Encoding::Utf16Be => UTF_16BE,
        // A guess checked on the first bytes only: the rest is checked as it is decoded, so
        // bytes the guess cannot read reject the file instead of turning into U+FFFD.
        Encoding::Detected { encoding, .. } => {
            return Box::new(StrictDecoder::new(source, encoding));
        }
        Encoding::Set { encoding, .. } if encoding == encoding_rs::UTF_8 => {
            return Box::new(CheckedUtf8::new(source, bom));
        }
        // Any other encoding set for the source, UTF-16 without a BOM included, is decoded
        // strictly too: a byte it cannot read rejects the file.
        Encoding::Set { encoding, .. } => {
            let mut decoder = StrictDecoder::new(source, encoding);
            decoder.offset = bom;
            return Box::new(decoder);
        }
    };
    let decoder = DecodeReaderBytesBuilder::new()
        .encoding(Some(transcode_from))
        .build(source);
    Box::new(decoder)
}

/// Line breaks in `text` (`\n`, `\r\n` or a lone `\r`), given the byte before it.
pub(super) fn line_breaks(text: &[u8], mut previous: u8) -> u64 {
    let mut breaks = 0;
    for &byte in text {
        if byte == b'\r' || (byte == b'\n' && previous != b'\r') {
            breaks += 1;
        }
        previous = byte;
    }
    breaks
}

/// Bytes at this offset of the file that are not text in the encoding detected for it.
#[derive(Debug, thiserror::Error)]
#[error("byte {offset} is not valid {encoding}")]
pub(super) struct NotInEncoding {
    pub(super) offset: u64,
    pub(super) encoding: &'static str,
}

/// A legacy encoding decoded to UTF-8 without replacement: the first malformed sequence ends
/// the stream with a [`NotInEncoding`] error rather than a U+FFFD in the table.
pub(super) struct StrictDecoder<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    encoding: &'static encoding_rs::Encoding,
    input: Box<[u8]>,
    /// Undecoded bytes are `input[start..end]`.
    start: usize,
    end: usize,
    /// File offset of `input[start]`.
    offset: u64,
    output: Box<[u8]>,
    /// Decoded bytes not handed out yet are `output[out_start..out_end]`.
    out_start: usize,
    out_end: usize,
    /// The input has ended (and the decoder was told so).
    ended: bool,
}

impl<R: Read> StrictDecoder<R> {
    pub(super) fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        let decoder = encoding.new_decoder_without_bom_handling();
        // Room for any one chunk of input: no legacy encoding triples in UTF-8 and more.
        let room = decoder
            .max_utf8_buffer_length_without_replacement(SNIFF_BYTES)
            .unwrap_or(4 * SNIFF_BYTES);
        Self {
            inner,
            decoder,
            encoding,
            input: vec![0; SNIFF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            output: vec![0; room].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            ended: false,
        }
    }

    /// Decode the next chunk into `output`; `false` at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        (self.out_start, self.out_end) = (0, 0);
        while self.out_end == 0 {
            if self.ended {
                return Ok(false);
            }
            if self.start == self.end {
                (self.start, self.end) = (0, read_retrying(&mut self.inner, &mut self.input)?);
            }
            let last = self.start == self.end;
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.start..self.end],
                &mut self.output,
                last,
            );
            self.start += read;
            self.offset += read as u64;
            self.out_end = written;
            match result {
                encoding_rs::DecoderResult::InputEmpty => self.ended = last,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(bad, after) => {
                    let offset = self
                        .offset
                        .saturating_sub(u64::from(bad) + u64::from(after));
                    let encoding = self.encoding.name();
                    let error = NotInEncoding { offset, encoding };
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                }
            }
        }
        Ok(true)
    }
}

impl<R: Read> Read for StrictDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.out_start == self.out_end && !self.refill()? {
            return Ok(0);
        }
        let n = out.len().min(self.out_end - self.out_start);
        out[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

/// Invalid UTF-8 at this byte of the file.
#[derive(Debug, thiserror::Error)]
#[error("invalid UTF-8 at byte {0}")]
pub(super) struct InvalidUtf8(pub(super) u64);

/// UTF-8 passed through unchanged and checked on the way, in the large chunks the csv reader
/// asks for: checking record by record with std took ~15% of the reading time, this takes
/// ~1%. Invalid bytes end the stream with an [`InvalidUtf8`] error.
pub(super) struct CheckedUtf8<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Next byte to hand out.
    start: usize,
    /// End of the checked bytes; after it, the start of a character cut by the last read.
    checked: usize,
    filled: usize,
    /// File offset of `buf[0]`.
    offset: u64,
}

impl<R: Read> CheckedUtf8<R> {
    pub(super) fn new(inner: R, offset: u64) -> Self {
        Self {
            inner,
            buf: vec![0; SNIFF_BYTES].into_boxed_slice(),
            start: 0,
            checked: 0,
            filled: 0,
            offset,
        }
    }

    /// Read and check the next chunk; `false` at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        self.buf.copy_within(self.checked..self.filled, 0);
        self.offset += self.checked as u64;
        self.filled -= self.checked;
        (self.start, self.checked) = (0, 0);
        while self.checked == 0 {
            let read = read_retrying(&mut self.inner, &mut self.buf[self.filled..])?;
            self.filled += read;
            // encoding_rs checks several times faster than std on non-ASCII text; std then
            // tells an invalid byte from a character cut short by the end of this read.
            let valid = encoding_rs::Encoding::utf8_valid_up_to(&self.buf[..self.filled]);
            match std::str::from_utf8(&self.buf[valid..self.filled]) {
                Ok(_) => self.checked = self.filled,
                Err(e) if e.error_len().is_none() && read > 0 => self.checked = valid,
                Err(_) => {
                    let at = self.offset + valid as u64;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, InvalidUtf8(at)));
                }
            }
            if read == 0 {
                break;
            }
        }
        Ok(self.checked > 0)
    }
}

impl<R: Read> Read for CheckedUtf8<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.checked && !self.refill()? {
            return Ok(0);
        }
        let n = out.len().min(self.checked - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

fn read_retrying(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The line of `path` that byte `offset` is on, read again from the start: only needed when
/// a file turns out not to be UTF-8.
pub(super) fn line_at(path: &Path, offset: u64) -> Result<u64, Rejection> {
    let unreadable = |e: io::Error| Rejection::new(format!("it could not be read: {e}"));
    let file = super::input::open(path).map_err(unreadable)?;
    let mut reader = io::BufReader::with_capacity(SNIFF_BYTES, file.take(offset));
    let (mut breaks, mut previous) = (0, 0);
    loop {
        let chunk = reader.fill_buf().map_err(unreadable)?;
        let Some(&last) = chunk.last() else {
            return Ok(1 + breaks);
        };
        breaks += line_breaks(chunk, previous);
        previous = last;
        let read = chunk.len();
        reader.consume(read);
    }
}

/// UTF-32 to UTF-8, streaming. encoding_rs has no UTF-32 (the Encoding Standard dropped it),
/// and a few tools still write it with a BOM.
pub(super) struct Utf32ToUtf8<R> {
    inner: R,
    little_endian: bool,
    /// Input not yet decoded: fewer than 4 bytes carried over between reads.
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    at_start: bool,
}

impl<R: Read> Utf32ToUtf8<R> {
    pub(super) fn new(inner: R, little_endian: bool) -> Self {
        Self {
            inner,
            little_endian,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            at_start: true,
        }
    }

    /// Decode the next chunk into `out`; `false` at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        let carried = self.raw.len();
        self.raw.resize(carried + 16 * 1024, 0);
        let read = read_retrying(&mut self.inner, &mut self.raw[carried..]);
        self.raw.truncate(carried + read.as_ref().map_or(0, |n| *n));
        let read = read?;
        self.out.clear();
        self.out_pos = 0;
        if read == 0 {
            if self.raw.is_empty() {
                return Ok(false);
            }
            // A truncated last character.
            self.raw.clear();
            self.out.extend_from_slice("\u{FFFD}".as_bytes());
            return Ok(true);
        }
        let whole = self.raw.len() / 4 * 4;
        for unit in self.raw[..whole].chunks_exact(4) {
            let bytes = [unit[0], unit[1], unit[2], unit[3]];
            let value = if self.little_endian {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            };
            if std::mem::take(&mut self.at_start) && value == 0xFEFF {
                continue;
            }
            let c = char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER);
            self.out
                .extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        self.raw.drain(..whole);
        Ok(true)
    }
}

impl<R: Read> Read for Utf32ToUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `text` with a BOM, in UTF-16 (`width` 2) or UTF-32 (`width` 4).
    pub(in crate::ingest::formats) fn wide(
        text: &str,
        width: usize,
        little_endian: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for c in std::iter::once('\u{FEFF}').chain(text.chars()) {
            let units: Vec<u32> = match width {
                2 => c
                    .encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|&u| u32::from(u))
                    .collect(),
                _ => vec![u32::from(c)],
            };
            for unit in units {
                let bytes = if little_endian {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                };
                match (width, little_endian) {
                    (2, true) => out.extend_from_slice(&bytes[..2]),
                    (2, false) => out.extend_from_slice(&bytes[2..]),
                    _ => out.extend_from_slice(&bytes),
                }
            }
        }
        out
    }

    #[test]
    fn checked_utf8_passes_text_through_and_stops_at_invalid_bytes() {
        let text = "añ€😀,".repeat(20_000);
        let mut out = String::new();
        CheckedUtf8::new(Trickle(text.as_bytes()), 0)
            .read_to_string(&mut out)
            .expect("valid UTF-8");
        assert_eq!(out, text);
        let cases: &[(&[u8], u64)] = &[(b"ab\xFFcd", 5), (b"ab\xE2\x82", 5), (b"\xE2\x82(", 3)];
        for (input, want) in cases {
            let error = CheckedUtf8::new(*input, 3)
                .read_to_end(&mut Vec::new())
                .expect_err("invalid");
            let inner = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<InvalidUtf8>());
            assert_eq!(inner.map(|e| e.0), Some(*want), "{input:?}");
        }
    }

    /// Hands out one byte per read, to exercise carry-over between reads.
    struct Trickle<'a>(&'a [u8]);

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&byte, rest)), Some(slot)) => {
                    *slot = byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn utf32_to_string(reader: impl io::Read, little_endian: bool) -> String {
        let mut out = String::new();
        Utf32ToUtf8::new(reader, little_endian)
            .read_to_string(&mut out)
            .expect("decode");
        out
    }

    #[test]
    fn utf32_decodes_across_reads() {
        let text = "a,ü,😀\n".repeat(5000);
        for little_endian in [true, false] {
            let bytes = wide(&text, 4, little_endian);
            assert_eq!(utf32_to_string(&bytes[..], little_endian), text);
            let first_15: String = text.chars().take(15).collect();
            assert_eq!(
                utf32_to_string(Trickle(&bytes[..64]), little_endian),
                first_15
            );
        }
        let bad = b"a\x00\x00\x00\x00\x00\x11\x00b\x00";
        assert_eq!(utf32_to_string(&bad[..], true), "a\u{FFFD}\u{FFFD}");
    }
}
