//! Decompressing a rotated log: every gzip member one after another, and
//! the zero bytes some tools leave after the last one.
//!
//! `flate2`'s `MultiGzDecoder` takes anything after a member for the next
//! member's header, so a file padded with zeros (a preallocated or
//! block-padded copy, which `gzip -t` accepts: "trailing zero bytes
//! ignored") fails at its very end. Here members are decoded one by one and
//! what follows the last one is judged: nothing, zeros (accepted, as gzip
//! does), or anything else (an error, after all the data before it).

use std::io::{self, BufRead, Read};

use flate2::bufread::GzDecoder;

/// The two bytes every gzip member starts with.
pub const MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A reader of the decompressed bytes of all gzip members of `R`.
pub struct GzipMembers<R: BufRead> {
    /// The member being decoded; `None` once the input is exhausted.
    member: Option<GzDecoder<R>>,
    /// Zero bytes skipped after the last member.
    padding: u64,
}

impl<R: BufRead> GzipMembers<R> {
    /// Decodes `input`, which starts with a gzip member.
    pub fn new(input: R) -> Self {
        GzipMembers {
            member: Some(GzDecoder::new(input)),
            padding: 0,
        }
    }

    /// Zero bytes found (and ignored) after the last member.
    pub fn padding(&self) -> u64 {
        self.padding
    }

    /// After a member: start the next one, or end the stream.
    fn next_member(&mut self, mut input: R) -> io::Result<()> {
        let head = input.fill_buf()?;
        if head.is_empty() {
            return Ok(());
        }
        if head[0] == 0 {
            return self.skip_padding(input);
        }
        if head.len() == 1 {
            // One byte may be a header cut short: the decoder says so.
            self.member = Some(GzDecoder::new(input));
            return Ok(());
        }
        if head.starts_with(&MAGIC) {
            self.member = Some(GzDecoder::new(input));
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "data after the last gzip member is not gzip (trailing garbage)",
        ))
    }

    fn skip_padding(&mut self, mut input: R) -> io::Result<()> {
        loop {
            let head = input.fill_buf()?;
            if head.is_empty() {
                return Ok(());
            }
            let zeros = head.iter().take_while(|&&b| b == 0).count();
            let all = zeros == head.len();
            input.consume(zeros);
            self.padding += zeros as u64;
            if !all {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "data after {} zero bytes that follow the last gzip member (trailing garbage)",
                        self.padding
                    ),
                ));
            }
        }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(member) = &mut self.member {
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let input = self.member.take().expect("matched above").into_inner();
            self.next_member(input)?;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn decode(data: &[u8]) -> (Vec<u8>, io::Result<usize>, u64) {
        let mut r = GzipMembers::new(data);
        let mut out = Vec::new();
        let result = r.read_to_end(&mut out);
        (out, result, r.padding())
    }

    #[test]
    fn members_are_read_one_after_another() {
        let mut data = gz(b"a\n");
        data.extend(gz(b"b\n"));
        data.extend(gz(b""));
        data.extend(gz(b"c\n"));
        let (out, result, padding) = decode(&data);
        assert_eq!(out, b"a\nb\nc\n");
        assert!(result.is_ok());
        assert_eq!(padding, 0);
    }

    #[test]
    fn zero_padding_after_the_last_member_is_accepted_like_gzip_does() {
        let mut data = gz(b"a\nb\n");
        data.extend(std::iter::repeat_n(0u8, 4096));
        let (out, result, padding) = decode(&data);
        assert_eq!(out, b"a\nb\n");
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(padding, 4096);
    }

    #[test]
    fn garbage_after_the_data_is_an_error_after_all_the_data() {
        let mut data = gz(b"a\nb\n");
        data.extend(b"\0\0garbage");
        let (out, result, _) = decode(&data);
        assert_eq!(out, b"a\nb\n");
        let e = result.unwrap_err();
        assert!(e.to_string().contains("trailing garbage"), "{e}");

        let mut data = gz(b"a\n");
        data.extend(b"PK\x03\x04");
        let (out, result, _) = decode(&data);
        assert_eq!(out, b"a\n");
        assert!(result.is_err());
    }

    #[test]
    fn a_truncated_member_is_an_error_after_what_it_held() {
        let body: String = (0..5000)
            .map(|i| format!("line {i} {}\n", i * 7919))
            .collect();
        let data = gz(body.as_bytes());
        let (out, result, _) = decode(&data[..data.len() / 2]);
        assert!(result.is_err());
        assert!(!out.is_empty() && body.as_bytes().starts_with(&out));
    }
}
