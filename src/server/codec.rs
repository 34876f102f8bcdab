//! Request framing: one line per request, at most `MAX_LINE_BYTES`.
//!
//! A longer line becomes one `TooLong` frame and is skipped up to its newline, so the
//! connection stays usable; the delimiter codec from tokio-util does the buffering.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder};

/// One framed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Line(Bytes),
    TooLong,
}

/// Newline-delimited frames with a hard length cap that never kills the stream.
pub struct LineCodec(AnyDelimiterCodec);

impl LineCodec {
    pub fn new(max: usize) -> Self {
        Self(AnyDelimiterCodec::new_with_max_length(
            b"\n".to_vec(),
            b"\n".to_vec(),
            max,
        ))
    }

    fn map(
        result: Result<Option<Bytes>, AnyDelimiterCodecError>,
    ) -> Result<Option<Frame>, std::io::Error> {
        match result {
            Ok(frame) => Ok(frame.map(Frame::Line)),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(Frame::TooLong)),
            Err(AnyDelimiterCodecError::Io(e)) => Err(e),
        }
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        Self::map(self.0.decode(src))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        Self::map(self.0.decode_eof(src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_and_the_next_line_still_reads() {
        let mut codec = LineCodec::new(8);
        let mut buf = BytesMut::from(&b"0123456789abc\nok\n"[..]);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        assert_eq!(
            frames,
            vec![Frame::TooLong, Frame::Line(Bytes::from_static(b"ok"))]
        );
    }

    #[test]
    fn a_long_line_arriving_in_pieces_is_one_too_long_frame() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"aaaaaa"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::TooLong));
        buf.extend_from_slice(b"aaaa");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"aa\nyes\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Line(Bytes::from_static(b"yes")))
        );
    }
}
