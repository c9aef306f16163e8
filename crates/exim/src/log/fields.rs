//! Tokenizing the `KEY=value` part of Exim log lines: host specs
//! (`name (helo) [ip]:port`), quoted values with `\"` escapes, bare words,
//! and the `: error text` tail of delivery and rejection lines.
//!
//! Everything works on byte positions of ASCII delimiters, which are always
//! char boundaries, so no slice can split a UTF-8 character.

/// The parts of an Exim host spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Host<'a> {
    pub name: Option<&'a str>,
    pub helo: Option<&'a str>,
    pub ip: Option<&'a str>,
}

impl<'a> Host<'a> {
    /// Verified name if any, else the HELO name.
    pub fn label(&self) -> Option<&'a str> {
        self.name.filter(|n| *n != "NULL").or(self.helo)
    }

    /// The IP, with IPv4-mapped IPv6 (`::ffff:1.2.3.4`) reduced to IPv4 so
    /// one client has one key whichever socket family accepted it.
    pub fn ip_normalized(&self) -> Option<&'a str> {
        let ip = self.ip?;
        match ip.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("::ffff:") && ip[7..].contains('.') => Some(&ip[7..]),
            _ => Some(ip),
        }
    }
}

pub(super) fn is_ip(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b':' || c == b'%')
        && s.bytes().any(|c| c.is_ascii_digit())
}

/// Parses a host spec at the start of `s`: `name`, `(helo)`, `name (helo)`,
/// `[ip]`, each combination, with an optional `:port` / `.port`. Returns the
/// parts and how many bytes it used.
pub(super) fn parse_host(s: &str) -> (Host<'_>, usize) {
    let b = s.as_bytes();
    let mut h = Host::default();
    let mut i = 0;
    if !matches!(b.first(), None | Some(b'[' | b'(' | b' ')) {
        let end = memchr_byte(b, b' ', 0).unwrap_or(b.len());
        h.name = Some(&s[..end]);
        i = end;
    }
    // ` (helo)`: ends at the first `)` that is followed by a space, `:` or the end.
    let helo_start = if b.get(i) == Some(&b'(') {
        Some(i + 1)
    } else if i > 0 && b.get(i) == Some(&b' ') && b.get(i + 1) == Some(&b'(') {
        Some(i + 2)
    } else {
        None
    };
    if let Some(start) = helo_start {
        let mut j = start;
        let close = loop {
            match memchr_byte(b, b')', j) {
                Some(k) if matches!(b.get(k + 1), None | Some(b' ' | b':')) => break Some(k),
                Some(k) => j = k + 1,
                None => break None,
            }
        };
        if let Some(k) = close {
            h.helo = s.get(start..k).filter(|x| !x.is_empty());
            i = k + 1;
        }
    }
    let ip_start = if b.get(i) == Some(&b'[') {
        Some(i + 1)
    } else if i > 0 && b.get(i) == Some(&b' ') && b.get(i + 1) == Some(&b'[') {
        Some(i + 2)
    } else {
        None
    };
    if let Some(start) = ip_start
        && let Some(k) = memchr_byte(b, b']', start)
    {
        h.ip = s.get(start..k).filter(|x| is_ip(x));
        i = k + 1;
        if matches!(b.get(i), Some(b':' | b'.')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
    }
    (h, i)
}

#[inline]
pub(super) fn memchr_byte(b: &[u8], needle: u8, from: usize) -> Option<usize> {
    memchr::memchr(needle, b.get(from..)?).map(|p| p + from)
}

/// `s` split at its first space: the first word and the rest after the
/// space (`(s, "")` without one), as `str::split_once(' ')` splits it.
///
/// A log line's first words are short, and a plain byte loop finds their end
/// several times faster than the SIMD search `split_once` sets up per call
/// (that was a sixth of parsing).
#[inline]
pub(super) fn split_word(s: &str) -> Option<(&str, &str)> {
    // The space is ASCII: both sides of it are on char boundaries.
    memchr_byte(s.as_bytes(), b' ', 0).map(|i| (&s[..i], &s[i + 1..]))
}

/// One token of a field list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    /// `KEY=value`; for a quoted value, the raw text between the quotes
    /// (escapes kept); for `H=`, the parsed host too.
    Field {
        key: &'a str,
        value: &'a str,
        quoted: bool,
        host: Option<Host<'a>>,
    },
    /// A word without `=`.
    Word(&'a str),
    /// Free text after `: ` (error or reason), only when tails are enabled.
    Tail(&'a str),
}

/// Walks the space separated tokens of a field list.
pub(super) struct Scanner<'a> {
    s: &'a str,
    pos: usize,
    tails: bool,
    tail: Option<&'a str>,
}

impl<'a> Scanner<'a> {
    /// `tails`: treat a token ending in `:` as the start of free text.
    pub fn new(s: &'a str, tails: bool) -> Self {
        Scanner {
            s,
            pos: 0,
            tails,
            tail: None,
        }
    }

    /// The unread rest (after the last token returned).
    pub fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("").trim_start_matches(' ')
    }

    /// Byte offset of the next unread token.
    pub fn offset(&self) -> usize {
        let b = self.s.as_bytes();
        let mut p = self.pos;
        while b.get(p) == Some(&b' ') {
            p += 1;
        }
        p
    }

    fn colon_tail(&mut self, end: usize) -> usize {
        let b = self.s.as_bytes();
        if self.tails && b.get(end) == Some(&b':') && matches!(b.get(end + 1), None | Some(b' ')) {
            self.tail = Some(self.s.get(end + 1..).unwrap_or("").trim_start_matches(' '));
            self.s.len()
        } else {
            end
        }
    }

    /// Splits a plain token at a trailing `:` that starts a tail.
    fn plain(&mut self, start: usize, end: usize) -> &'a str {
        let b = self.s.as_bytes();
        if self.tails && end > start && b[end - 1] == b':' {
            self.tail = Some(self.s.get(end..).unwrap_or("").trim_start_matches(' '));
            self.pos = self.s.len();
            &self.s[start..end - 1]
        } else {
            self.pos = end;
            &self.s[start..end]
        }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Tok<'a>;

    fn next(&mut self) -> Option<Tok<'a>> {
        if let Some(t) = self.tail.take() {
            self.pos = self.s.len();
            return Some(Tok::Tail(t));
        }
        let b = self.s.as_bytes();
        let mut p = self.pos;
        while b.get(p) == Some(&b' ') {
            p += 1;
        }
        if p >= b.len() {
            self.pos = p;
            return None;
        }
        let mut k = p;
        while k < b.len() && k - p <= 16 && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
            k += 1;
        }
        if k > p && b.get(k) == Some(&b'=') {
            let key = &self.s[p..k];
            let vstart = k + 1;
            if key == "H" {
                let (host, n) = parse_host(&self.s[vstart..]);
                let end = vstart + n;
                let value = &self.s[vstart..end];
                self.pos = self.colon_tail(end);
                return Some(Tok::Field {
                    key,
                    value,
                    quoted: false,
                    host: Some(host),
                });
            }
            if b.get(vstart) == Some(&b'"') {
                // The closing quote, skipping each backslash and the byte
                // it escapes; without one the value runs to the end.
                let mut j = vstart + 1;
                let close = loop {
                    match memchr::memchr2(b'"', b'\\', b.get(j..).unwrap_or_default()) {
                        Some(at) if b[j + at] == b'"' => break j + at,
                        Some(at) => j += at + 2,
                        None => break b.len(),
                    }
                };
                let value = &self.s[vstart + 1..close];
                let end = (close + 1).min(b.len());
                self.pos = self.colon_tail(end);
                return Some(Tok::Field {
                    key,
                    value,
                    quoted: true,
                    host: None,
                });
            }
            let end = memchr_byte(b, b' ', vstart).unwrap_or(b.len());
            let value = self.plain(vstart, end);
            return Some(Tok::Field {
                key,
                value,
                quoted: false,
                host: None,
            });
        }
        let end = memchr_byte(b, b' ', p).unwrap_or(b.len());
        Some(Tok::Word(self.plain(p, end)))
    }
}

/// Undoes Exim's `\"` and `\\` escapes in a quoted value.
pub(super) fn unescape(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `<addr>` → `addr`.
/// The address at the start of `s` and what follows it. An address is one
/// word, except that a quoted local part may hold spaces
/// (`"john smith"@example.com`): a sender chosen by the client must not
/// lose its domain by quoting.
pub(super) fn split_address(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let start = usize::from(s.starts_with('<'));
    let end_of_quote = if s[start..].starts_with('"') {
        // The closing quote; a backslash escapes the next character.
        let bytes = s.as_bytes();
        let mut i = start + 1;
        loop {
            match bytes.get(i) {
                None => break None,
                Some(b'\\') => i += 2,
                Some(b'"') => break Some(i + 1),
                Some(_) => i += 1,
            }
        }
    } else {
        None
    };
    let from = end_of_quote.unwrap_or(0).min(s.len());
    match memchr_byte(s.as_bytes(), b' ', from) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

pub(super) fn strip_angles(s: &str) -> &str {
    let s = s.strip_prefix('<').unwrap_or(s);
    s.strip_suffix('>').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_splits_where_split_once_splits() {
        for s in [
            "1sGxyz-000abc-0a <= a@b",
            "Completed",
            " lead",
            "trail ",
            "é ü x",
            "",
        ] {
            assert_eq!(split_word(s), s.split_once(' '), "{s:?}");
        }
    }

    #[test]
    fn an_address_with_a_quoted_local_part_is_one_address() {
        // The first from Exim's test suite (test/log/0084 and kin).
        assert_eq!(
            split_address("\"abc@def\"@unknown.domain U=CALLER P=local-smtp S=sss"),
            ("\"abc@def\"@unknown.domain", "U=CALLER P=local-smtp S=sss")
        );
        assert_eq!(
            split_address("\"john smith\"@example.com H=(x) [192.0.2.1]"),
            ("\"john smith\"@example.com", "H=(x) [192.0.2.1]")
        );
        assert_eq!(
            split_address("<\"a \\\" b\"@x.example> R=r"),
            ("<\"a \\\" b\"@x.example>", "R=r")
        );
        assert_eq!(
            split_address("  bob@x.example  R=r"),
            ("bob@x.example", "R=r")
        );
        assert_eq!(split_address("\"unterminated"), ("\"unterminated", ""));
        assert_eq!(split_address(""), ("", ""));
    }

    fn host(s: &str) -> (Option<&str>, Option<&str>, Option<&str>, usize) {
        let (h, n) = parse_host(s);
        (h.name, h.helo, h.ip, n)
    }

    #[test]
    fn host_forms() {
        assert_eq!(
            host("bba.example (VaniAcer) [83.110.18.213]:64606 P=x"),
            (
                Some("bba.example"),
                Some("VaniAcer"),
                Some("83.110.18.213"),
                44
            )
        );
        assert_eq!(
            host("(ylmf-pc) [1.2.3.4]"),
            (None, Some("ylmf-pc"), Some("1.2.3.4"), 19)
        );
        assert_eq!(host("[1.2.3.4]:25 I=x"), (None, None, Some("1.2.3.4"), 12));
        assert_eq!(host("name.only P=x"), (Some("name.only"), None, None, 9));
        assert_eq!(host("(helo.only) P=x"), (None, Some("helo.only"), None, 11));
        assert_eq!(
            host("[2001:db8::1]:25"),
            (None, None, Some("2001:db8::1"), 16)
        );
        assert_eq!(host("x ([192.168.2.33]) [24.1.1.1]").2, Some("24.1.1.1"));
        assert_eq!(
            host("x ([192.168.2.33]) [24.1.1.1]").1,
            Some("[192.168.2.33]")
        );
        let (h, _) = parse_host("[::ffff:1.2.3.4]");
        assert_eq!(h.ip_normalized(), Some("1.2.3.4"));
        let (h, _) = parse_host("[::1]");
        assert_eq!(h.ip_normalized(), Some("::1"));
        assert_eq!(host("").3, 0);
        assert_eq!(host("(unterminated [1.2.3.4").2, None);
        assert_eq!(host("[not an ip]").2, None);
    }

    #[test]
    fn scanner_fields_words_tails() {
        let toks: Vec<_> = Scanner::new(r#"R=a T=remote_smtp: SMTP error: x"#, true).collect();
        assert_eq!(toks.len(), 3);
        assert!(matches!(
            toks[1],
            Tok::Field {
                key: "T",
                value: "remote_smtp",
                ..
            }
        ));
        assert_eq!(toks[2], Tok::Tail("SMTP error: x"));

        let toks: Vec<_> = Scanner::new(r#"T="a \"b\" c" for x y"#, false).collect();
        assert!(matches!(
            toks[0],
            Tok::Field {
                key: "T",
                value: r#"a \"b\" c"#,
                quoted: true,
                ..
            }
        ));
        assert_eq!(toks[1], Tok::Word("for"));
        assert_eq!(unescape(r#"a \"b\" c\\d\n"#), "a \"b\" c\\d\\n");

        let toks: Vec<_> = Scanner::new("defer (-46) H=mx [1.2.3.4]: 421 x", true).collect();
        assert_eq!(toks[0], Tok::Word("defer"));
        assert!(matches!(toks[2], Tok::Field { key: "H", .. }));
        assert_eq!(toks[3], Tok::Tail("421 x"));

        let toks: Vec<_> = Scanner::new("T=\"unterminated", false).collect();
        assert!(matches!(
            toks[0],
            Tok::Field {
                value: "unterminated",
                ..
            }
        ));

        // A cut line can end inside an escape: the value runs to the end.
        for (line, value) in [
            (r#"T="ends in \"#, r#"ends in \"#),
            (r#"T="ends in \\"#, r#"ends in \\"#),
            (r#"T="x\" y" S=1"#, r#"x\" y"#),
        ] {
            let toks: Vec<_> = Scanner::new(line, false).collect();
            assert!(
                matches!(toks[0], Tok::Field { value: v, quoted: true, .. } if v == value),
                "{line}: {toks:?}"
            );
        }
    }
}
