//! JSON that comes from outside: an HTTP answer or request body, a file in BACKUP_DIR,
//! an object of the bucket (docs/format.md, Reading JSON).
//!
//! nanoserde's derived readers trust their input. In a field they do not know, a
//! truncated value (`{"x": [1,`) makes them loop for ever and a stray `]`, `:`, `,` or
//! `}` (`{"x": ]}`) makes them panic (nanoserde 0.2.1, `DeJsonState::whole_field`): a
//! hostile peer (a neighbour on the LAN, a club sharing the bucket, an endpoint that
//! answers what it likes) would hang a thread or abort the daemon. So every text is
//! first walked here, strictly (RFC 8259) with its nesting bounded, and handed to
//! nanoserde only once it is JSON: `parse` is the only way in (clippy.toml forbids
//! calling `deserialize_json` anywhere else). On JSON, nanoserde gives a value or an
//! error, never a panic or a loop (the unit tests below feed it both kinds).
//!
//! The same walk reads the few fields of Google's answers and of the Drive token file
//! (`walk`), in place of derived readers: each of those cost 1 to 5 KB of the static
//! binary (issue 20 gives Google Drive 60 KB in all).

use nanoserde::DeJson;

/// Deepest nesting of objects and arrays taken (the product's own files nest 3 deep).
pub const MAX_DEPTH: usize = 64;

/// One step of the way from the top to a value: a key, or an index in an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A value that holds no other: a string (unescaped), a number (its text), a boolean
/// or null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar<'a> {
    Str(String),
    Num(&'a str),
    Bool(bool),
    Null,
}

impl Scalar<'_> {
    /// The text of a string or of a number; `None` for the others.
    pub fn text(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Num(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Whether `path` is the key `k` under the top object.
pub fn top(path: &[Seg]) -> Option<&str> {
    match path {
        [Seg::Key(k)] => Some(k),
        _ => None,
    }
}

/// `T` read from `text`, once `text` was seen to be JSON.
pub fn parse<T: DeJson>(text: &str) -> Result<T, String> {
    walk(text, &mut |_, _| {})?;
    #[allow(clippy::disallowed_methods)] // the one place: `text` is JSON.
    T::deserialize_json(text).map_err(|e| e.to_string())
}

/// Walks `text`, calling `each` with the way to every scalar and the scalar, in order;
/// an error (and no more calls) where it stops being JSON or nests deeper than
/// MAX_DEPTH. The error says where (a byte offset), never what the text holds: it may
/// be a secret.
pub fn walk(text: &str, each: &mut dyn FnMut(&[Seg], Scalar<'_>)) -> Result<(), String> {
    let mut w = Walk {
        s: text,
        b: text.as_bytes(),
        i: 0,
        path: Vec::new(),
        each,
    };
    w.value(0)?;
    w.ws();
    if w.i != w.b.len() {
        return Err(w.err("text after the value"));
    }
    Ok(())
}

struct Walk<'a, 'f> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    path: Vec<Seg>,
    each: &'f mut dyn FnMut(&[Seg], Scalar<'_>),
}

impl Walk<'_, '_> {
    fn err(&self, what: &str) -> String {
        format!("not JSON at byte {}: {what}", self.i)
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// Takes `c` (after blanks), or fails.
    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) != Some(&c) {
            return Err(self.err("unexpected character"));
        }
        self.i += 1;
        Ok(())
    }

    /// After blanks: takes `c` and says so, or leaves the text as it is.
    fn next_is(&mut self, c: u8) -> bool {
        self.ws();
        let yes = self.b.get(self.i) == Some(&c);
        if yes {
            self.i += 1;
        }
        yes
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        self.ws();
        let Some(&c) = self.b.get(self.i) else {
            return Err(self.err("the text ends"));
        };
        if c == b'{' || c == b'[' {
            if depth >= MAX_DEPTH {
                return Err(self.err("nested too deep"));
            }
            self.i += 1;
            let close = if c == b'{' { b'}' } else { b']' };
            if self.next_is(close) {
                return Ok(());
            }
            let mut n = 0;
            loop {
                let seg = if c == b'{' {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    Seg::Key(k)
                } else {
                    Seg::Index(n)
                };
                n += 1;
                self.path.push(seg);
                self.value(depth + 1)?;
                self.path.pop();
                if !self.next_is(b',') {
                    return self.eat(close);
                }
            }
        }
        let v = match c {
            b'"' => Scalar::Str(self.string()?),
            b't' => self.word("true", Scalar::Bool(true))?,
            b'f' => self.word("false", Scalar::Bool(false))?,
            b'n' => self.word("null", Scalar::Null)?,
            _ => {
                let from = self.i;
                self.number()?;
                Scalar::Num(self.s.get(from..self.i).unwrap_or(""))
            }
        };
        (self.each)(&self.path, v);
        Ok(())
    }

    fn word(&mut self, w: &str, v: Scalar<'static>) -> Result<Scalar<'static>, String> {
        if !self.b[self.i..].starts_with(w.as_bytes()) {
            return Err(self.err("unexpected character"));
        }
        self.i += w.len();
        Ok(v)
    }

    fn digits(&mut self) -> Result<(), String> {
        let from = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        if self.i == from {
            return Err(self.err("a digit expected"));
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), String> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        if self.b.get(self.i) == Some(&b'0') {
            self.i += 1;
        } else {
            self.digits()?;
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.digits()?;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i.saturating_add(4))
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("a bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }

    /// A string, unescaped (a lone surrogate is refused: it is no character).
    fn string(&mut self) -> Result<String, String> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.err("a string expected"));
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            let from = self.i;
            while self
                .b
                .get(self.i)
                .is_some_and(|&b| b != b'"' && b != b'\\' && b >= 0x20)
            {
                self.i += 1;
            }
            // `from` and `i` sit next to ASCII bytes: both are char boundaries.
            out.push_str(self.s.get(from..self.i).unwrap_or(""));
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.err("the text ends in a string"));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {}
                _ => return Err(self.err("a control character in a string")),
            }
            let Some(&e) = self.b.get(self.i) else {
                return Err(self.err("the text ends in a string"));
            };
            self.i += 1;
            let ch = match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let mut u = self.hex4()?;
                    if (0xD800..0xDC00).contains(&u) && self.b[self.i..].starts_with(b"\\u") {
                        self.i += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(self.err("a lone surrogate"));
                        }
                        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    char::from_u32(u).ok_or_else(|| self.err("a lone surrogate"))?
                }
                _ => return Err(self.err("a bad escape")),
            };
            out.push(ch);
        }
    }
}

#[cfg(test)]
// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#[allow(clippy::question_mark)]
mod tests {
    use super::*;
    use nanoserde::DeJson;

    #[derive(DeJson, Debug, PartialEq)]
    struct A {
        a: Option<String>,
    }

    fn all(text: &str) -> Result<Vec<(Vec<Seg>, Scalar<'_>)>, String> {
        let mut out = Vec::new();
        walk(text, &mut |p, v| {
            let v = match v {
                Scalar::Num(n) => Scalar::Num(n.to_string().leak()),
                Scalar::Str(s) => Scalar::Str(s),
                Scalar::Bool(b) => Scalar::Bool(b),
                Scalar::Null => Scalar::Null,
            };
            out.push((p.to_vec(), v))
        })?;
        Ok(out)
    }

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn the_walk_gives_every_scalar_with_its_way() {
        let got =
            all(r#" {"a": [1, {"b": "x\"\u00e9\ud83d\ude00"}, true], "c": null, "d": -0.5e+3} "#)
                .unwrap();
        assert_eq!(
            got,
            vec![
                (vec![k("a"), Seg::Index(0)], Scalar::Num("1")),
                (
                    vec![k("a"), Seg::Index(1), k("b")],
                    Scalar::Str("x\"é😀".into())
                ),
                (vec![k("a"), Seg::Index(2)], Scalar::Bool(true)),
                (vec![k("c")], Scalar::Null),
                (vec![k("d")], Scalar::Num("-0.5e+3")),
            ]
        );
        assert_eq!(
            all("\"\\/\\b\\f\\n\\r\\t\"").unwrap()[0].1,
            Scalar::Str("/\u{8}\u{c}\n\r\t".into())
        );
        assert_eq!(all("{}").unwrap(), vec![]);
        assert_eq!(all("[[]]").unwrap(), vec![]);
    }

    /// What made nanoserde 0.2.1 panic or loop for ever, and what is not JSON: an error.
    #[test]
    fn what_is_not_json_is_an_error_and_never_reaches_nanoserde() {
        for bad in [
            r#"{"b": ]}"#,
            r#"{"b": :}"#,
            r#"{"b": ,}"#,
            r#"{"b": }"#,
            r#"{"b": [[[[ "#,
            r#"{"b": [1, 2"#,
            r#"{"a": "x""#,
            r#"{"b": {"c": 1}"#,
            r#"{"a": "x", "b": [ }"#,
            r#"{"a": "x",}"#,
            r#"[1,]"#,
            r#"{"a" "x"}"#,
            r#"{a: 1}"#,
            r#"{"b": tru}"#,
            r#"{"b": 01}"#,
            r#"{"b": 1.}"#,
            r#"{"b": .5}"#,
            r#"{"b": -}"#,
            r#"{"b": 1e}"#,
            r#"{"b": +1}"#,
            r#"{"a": "\ud800"}"#,
            r#"{"a": "\udc00"}"#,
            r#"{"a": "\ud800\u0041"}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": "\u12"}"#,
            "{\"a\": \"tab\there\"}",
            r#"{"a": "x"} {}"#,
            "",
            "   ",
            "nul",
        ] {
            assert!(walk(bad, &mut |_, _| {}).is_err(), "{bad:?}");
            assert!(parse::<A>(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(walk(&deep, &mut |_, _| {}).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(walk(&ok, &mut |_, _| {}).is_ok());
        // Deeper than the stack could take: an error, not an overflow.
        let very = "[".repeat(1_000_000);
        assert!(walk(&very, &mut |_, _| {}).is_err());
    }

    /// On JSON, nanoserde gives a value or an error: never a panic (the release build
    /// would abort) nor a loop (the test would not end).
    #[test]
    fn on_json_nanoserde_answers() {
        for (text, want) in [
            (
                r#"{"a": "x", "b": [1, {"c": [true, null]}, "]"]}"#,
                Some("x"),
            ),
            (r#"{"b": 1e999, "c": -1.5E-3, "d": "\ud83d\ude00"}"#, None),
            (r#"{"b": [[[[[[[[[[]]]]]]]]]]}"#, None),
        ] {
            assert_eq!(
                parse::<A>(text).map(|a| a.a),
                Ok(want.map(String::from)),
                "{text}"
            );
        }
        for err in [
            r#"{"b": 99999999999999999999999999, "a": "y"}"#,
            r#"{"a": 5}"#,
            r#"{"a": ["x"]}"#,
            r#"[]"#,
            r#""a""#,
        ] {
            assert!(parse::<A>(err).is_err(), "{err}");
        }
    }

    #[test]
    fn errors_say_where_never_what() {
        let e = walk(r#"{"refresh_token": "s3cret"#, &mut |_, _| {}).unwrap_err();
        assert!(e.contains("byte 25"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
