//! `%XX` escapes, decoded once, for the two places that read them: an archive name in
//! an API path (serve/api.rs) and the user and password of an SMTP URL (smtp/url.rs);
//! and encoded, for the query strings and form bodies sent to Google (bucket/gdrive.rs,
//! bucket/google_oauth.rs).

/// Encodes every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`: safe in
/// a query string's value and in an `application/x-www-form-urlencoded` body.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Decodes each `%XX` escape (two hex digits, either case) once; `None` when a `%` is
/// not followed by two hex digits (`%2`, `%zz`, and `%+f`, which `u8::from_str_radix`
/// alone would take for 0x0f) or when the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex_digit(*b.get(i + 1)?)?;
            let lo = hex_digit(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, percent_encode};

    #[test]
    fn encodes_all_but_the_unreserved_and_round_trips() {
        assert_eq!(percent_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(percent_encode("a b/c'd=é"), "a%20b%2Fc%27d%3D%C3%A9");
        assert_eq!(percent_encode("1//x+y&z"), "1%2F%2Fx%2By%26z");
        for s in ["name = 'x\\'y' and", "été 100%", ""] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
    }

    #[test]
    fn decodes_each_escape_once() {
        assert_eq!(percent_decode("a%2Fb%2fc").as_deref(), Some("a/b/c"));
        assert_eq!(percent_decode("%C3%A9t%c3%a9").as_deref(), Some("été"));
        assert_eq!(percent_decode("%252e").as_deref(), Some("%2e"));
        assert_eq!(percent_decode("p%40ss%3Aw").as_deref(), Some("p@ss:w"));
        assert_eq!(percent_decode("").as_deref(), Some(""));
        assert_eq!(percent_decode("plain+text").as_deref(), Some("plain+text"));
        assert_eq!(percent_decode("é%20").as_deref(), Some("é "));
    }

    #[test]
    fn refuses_what_is_not_two_hex_digits() {
        for bad in [
            "%+f", "%-1", "% f", "%2", "%", "a%", "%zz", "%g0", "%0g", "x%2", "%é9",
        ] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_a_result_that_is_not_utf8() {
        assert_eq!(percent_decode("%C3"), None);
        assert_eq!(percent_decode("%ff%fe"), None);
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
    }
}
