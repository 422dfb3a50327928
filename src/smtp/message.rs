//! The message an alert mail carries (RFC 5322, MIME, RFC 2047): a 7-bit message with
//! the subject in encoded words and the body in quoted-printable (see the module doc of
//! smtp/mod.rs for why). Pure functions.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock;

pub(super) use crate::units::base64;

/// A whole message, ready for [`send`]: CRLF line ends, 7-bit, no line over 76
/// characters. `now` is the Unix time of the Date header (written in UTC, `+0000`),
/// `hostname` the right-hand side of the Message-ID. Control characters in the
/// addresses are blanked (no header can be injected through them).
pub fn build_message(
    from: &str,
    to: &[String],
    subject: &str,
    body_text: &str,
    now: i64,
    hostname: &str,
) -> Vec<u8> {
    compose(
        from,
        to,
        subject,
        body_text,
        now,
        &message_id(now, hostname),
    )
}

pub(super) fn compose(
    from: &str,
    to: &[String],
    subject: &str,
    body_text: &str,
    now: i64,
    message_id: &str,
) -> Vec<u8> {
    let mut m = String::with_capacity(body_text.len() * 3 / 2 + 512);
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    m.push_str(&format!("From: {}\r\n", header_safe(from)));
    m.push_str(&fold_list("To:", to));
    m.push_str(&format!("Subject: {}\r\n", encode_header_text(subject)));
    m.push_str(&format!("Message-ID: {message_id}\r\n"));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: quoted-printable\r\n");
    // RFC 3834: a machine wrote this; vacation responders stay quiet.
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("\r\n");
    m.push_str(&quoted_printable(body_text));
    m.into_bytes()
}

/// Printable ASCII only: control characters (CR, LF…) and non-ASCII become spaces.
pub(super) fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `To: a@x, b@y`, folded before an address that would take the line over 76.
pub(super) fn fold_list(name: &str, items: &[String]) -> String {
    let mut out = name.to_string();
    let mut line_len = out.len();
    for (i, item) in items.iter().enumerate() {
        let item = header_safe(item);
        let sep = if i + 1 < items.len() { "," } else { "" };
        if i > 0 && line_len + 1 + item.len() + sep.len() > 76 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(&item);
        out.push_str(sep);
        line_len += 1 + item.len() + sep.len();
    }
    out.push_str("\r\n");
    out
}

/// UTF-8 bytes per encoded word: 39 bytes are 52 base64 characters, a 64-character
/// word `=?UTF-8?B?…?=`, so that even `Subject: ` and the first word stay within the 76
/// characters RFC 2047 allows a line that holds encoded words.
pub(super) const WORD_BYTES: usize = 39;

/// A header's text: as is when it is short printable ASCII, else RFC 2047 encoded
/// words (B encoding of UTF-8, never splitting a character), one per folded line.
pub(super) fn encode_header_text(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.contains("=?")
        && text.len() <= 76 - "Subject: ".len();
    if plain {
        return text.to_string();
    }
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > WORD_BYTES {
            words.push(&text[start..end]);
            start = i;
        }
        end = i + c.len_utf8();
    }
    if end > start {
        words.push(&text[start..end]);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Quoted-printable (RFC 2045 6.7) of a text: lines of at most 76 characters with soft
/// breaks, CRLF line ends, `=`, non-ASCII and a line's trailing blank escaped.
pub(super) fn quoted_printable(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let text = text.replace("\r\n", "\n");
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for line in text.split('\n') {
        let bytes = line.as_bytes();
        let mut len = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal =
                (b.is_ascii_graphic() && b != b'=') || ((b == b' ' || b == b'\t') && !last);
            let width = if literal { 1 } else { 3 };
            // Room for the soft break's `=` within 76.
            if len + width > 75 {
                out.push_str("=\r\n");
                len = 0;
            }
            if literal {
                out.push(char::from(b));
            } else {
                out.push('=');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
            len += width;
        }
        out.push_str("\r\n");
    }
    out
}

/// `Wed, 18 Dec 2024 02:00:00 +0000` (RFC 5322 3.3), in UTC.
pub fn rfc5322_date(unix: i64) -> String {
    format!("{} +0000", clock::day_and_time_utc(unix))
}

/// `<time.counter.random@host>`: unique across runs (the time and 64 random bits) and
/// within one (a counter).
pub(super) fn message_id(now: i64, hostname: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
        // No randomness: the nanoseconds of the clock and the process id instead.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        random[..4].copy_from_slice(&nanos.to_be_bytes());
        random[4..].copy_from_slice(&std::process::id().to_be_bytes());
    }
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let host = host.trim_matches('.');
    let host = if host.is_empty() { "localhost" } else { host };
    format!(
        "<{now}.{}.{:016x}.neopro-backup@{host}>",
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u64::from_be_bytes(random)
    )
}
