//! The XML of S3 answers (ListObjectsV2, errors, multipart) and of the one request body
//! that is XML (CompleteMultipartUpload): flat enough for a few string searches, so no
//! XML crate. Elements are found by name, not nested in themselves; entities are the five
//! predefined ones and numeric references, anything else is kept as written.

/// The text of each `<name>…</name>` element in `xml`, in order (not nested in itself).
pub fn xml_all<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The first `<name>…</name>` element's text.
pub fn xml_one<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    xml_all(xml, name).into_iter().next()
}

/// Entities replaced by their characters; an unknown or unfinished one stays as written.
pub fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let ent = &tail[1..end];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text as element content: `&`, `<` and `>` escaped.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml() {
        let x = "<R><Contents><Key>a&amp;b</Key><Size>3</Size></Contents>\
                 <Contents><Key>c</Key><Size>4</Size></Contents><IsTruncated>false</IsTruncated></R>";
        let keys: Vec<_> = xml_all(x, "Contents")
            .iter()
            .filter_map(|c| xml_one(c, "Key"))
            .map(xml_unescape)
            .collect();
        assert_eq!(keys, ["a&b", "c"]);
        assert_eq!(xml_unescape("&lt;&#65;&#x42;&bogus;&"), "<AB&bogus;&");
        assert_eq!(xml_escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
