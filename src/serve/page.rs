//! The backups web page served at `GET /`: one self-contained HTML file (CSS and JS
//! inline, no external resources: the Pi is often offline), compiled into the binary.
//!
//! The `fleet serve` dashboard (fleet.rs) has the same look: the style both pages share
//! lives once, in style.css, and so do their script helpers (`el()`, sizes, dates,
//! `ago`, the token dialog), in util.js. Each page's source holds a marker line where
//! they go (`/* style.css */` first in its `<style>`, after its own page-width rules;
//! `// util.js` in its `<script>`), and [`embed!`]
//! replaces it at compile time: each page is still served as one self-contained answer
//! under the same Content-Security-Policy, and a marker missing or doubled fails the build.

/// The style both pages share; each page's own rules follow it.
pub const STYLE: &str = include_str!("style.css");
/// The marker line in each page's `<style>` that [`STYLE`] replaces.
pub const STYLE_MARK: &str = "/* style.css */\n";
/// The helpers both pages' scripts use: `el(tag, attrs, ...kids)`, `bytes`, `num`,
/// `wallClock`, `agoSaying`, `bearer`.
pub const UTIL_JS: &str = include_str!("util.js");
/// The marker line in each page's `<script>` that [`UTIL_JS`] replaces.
pub const UTIL_MARK: &str = "// util.js\n";

pub const PAGE: &str = embed!(include_str!("page.html"));

/// `src` with its one `mark` replaced by `with`, in an array of exactly the resulting
/// length `N` (for `const` items: a missing or doubled mark is then a build error).
pub const fn splice<const N: usize>(src: &[u8], mark: &[u8], with: &[u8]) -> [u8; N] {
    let mut at = usize::MAX;
    let mut i = 0;
    while !mark.is_empty() && i + mark.len() <= src.len() {
        let mut j = 0;
        while j < mark.len() && src[i + j] == mark[j] {
            j += 1;
        }
        if j == mark.len() {
            if at != usize::MAX {
                panic!("the marker is in the page twice");
            }
            at = i;
        }
        i += 1;
    }
    if at == usize::MAX {
        panic!("the marker is not in the page");
    }
    if N + mark.len() != src.len() + with.len() {
        panic!("wrong length for the spliced page");
    }
    let mut out = [0u8; N];
    let mut k = 0;
    while k < N {
        out[k] = if k < at {
            src[k]
        } else if k < at + with.len() {
            with[k - at]
        } else {
            src[k - with.len() + mark.len()]
        };
        k += 1;
    }
    out
}

/// A page's source (a `&'static str`) with [`STYLE`] and [`UTIL_JS`] put in place of
/// their markers, as a `&'static str` computed at compile time.
macro_rules! embed {
    ($src:expr) => {{
        use $crate::serve::page::{STYLE, STYLE_MARK, UTIL_JS, UTIL_MARK, splice};
        const SRC: &[u8] = $src.as_bytes();
        const STYLED: [u8; SRC.len() - STYLE_MARK.len() + STYLE.len()] =
            splice(SRC, STYLE_MARK.as_bytes(), STYLE.as_bytes());
        const DONE: [u8; STYLED.len() - UTIL_MARK.len() + UTIL_JS.len()] =
            splice(&STYLED, UTIL_MARK.as_bytes(), UTIL_JS.as_bytes());
        match std::str::from_utf8(&DONE) {
            Ok(s) => s,
            Err(_) => panic!("a page is not UTF-8"),
        }
    }};
}
pub(crate) use embed;

/// The page's Content-Security-Policy: nothing from elsewhere, and framed only by its
/// own origin and the FRAME_ANCESTORS origins (docs/format.md, HTTP): another site
/// cannot frame it to drive its buttons (clickjacking).
pub fn csp(frame_ancestors: &[String]) -> String {
    let mut p = String::from(
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         img-src data:; connect-src 'self'; frame-ancestors 'self'",
    );
    for o in frame_ancestors {
        p.push(' ');
        p.push_str(o);
    }
    p
}

/// Why `page` would not work whole under `csp`, if it would not: its `<style>` and
/// `<script>` blocks are inline, so the policy must allow inline ones ('unsafe-inline',
/// and no hash or nonce, which make browsers ignore 'unsafe-inline'), and the page must
/// load nothing (no script or style file, no link but its `data:` icon, no `url()`).
#[cfg(test)]
pub fn inline_only(page: &str, csp: &str) -> Result<(), String> {
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(name).filter(|v| v.starts_with(' ')))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
    };
    for name in ["script-src", "style-src"] {
        let Some(sources) = directive(name) else {
            return Err(format!("no {name} in {csp}"));
        };
        if sources != ["'unsafe-inline'"] {
            return Err(format!(
                "{name} is {sources:?}, the inline blocks need only 'unsafe-inline'"
            ));
        }
    }
    if directive("default-src") != Some(vec!["'none'"]) {
        return Err(format!("default-src is not 'none' in {csp}"));
    }
    if page.matches("<style>").count() != 1 || page.matches("<style").count() != 1 {
        return Err("the page has not exactly one bare <style>".into());
    }
    if page.matches("<script>").count() != 1 || page.matches("<script").count() != 1 {
        return Err(
            "the page has not exactly one bare <script> (one with src loads a file)".into(),
        );
    }
    let links: Vec<_> = page.match_indices("<link").collect();
    if links.len() != 1 || !page.contains("<link rel=\"icon\" href=\"data:,\">") {
        return Err("a <link> other than the data: icon".into());
    }
    for bad in [
        "url(", "@import", "src=\"", "srcset=", "<iframe", "<img", "<object",
    ] {
        if page.contains(bad) {
            return Err(format!("the page loads something: {bad}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_puts_the_shared_text_in_place_of_the_one_marker() {
        let out: [u8; 9] = splice(b"a<m>\nb", b"<m>\n", b"shared\n");
        assert_eq!(&out, b"ashared\nb");
        let end: [u8; 4] = splice(b"ab<m>", b"<m>", b"cd");
        assert_eq!(&end, b"abcd");
    }

    #[test]
    fn splice_refuses_a_missing_or_doubled_marker_or_a_wrong_length() {
        // At compile time these panics are build errors; here they are plain panics.
        let missing = std::panic::catch_unwind(|| splice::<3>(b"abc", b"<m>", b""));
        assert!(missing.is_err());
        let twice = std::panic::catch_unwind(|| splice::<2>(b"<m>a<m>b", b"<m>", b""));
        assert!(twice.is_err());
        let length = std::panic::catch_unwind(|| splice::<5>(b"a<m>b", b"<m>", b"x"));
        assert!(length.is_err());
    }

    /// Both served pages: the shared style first in their one `<style>` (after only
    /// their own page-width rules), util.js in their one `<script>`, no marker left.
    #[test]
    fn both_pages_embed_the_shared_style_and_helper_once() {
        for (name, page) in [("page", PAGE), ("fleet", crate::serve::fleet::PAGE)] {
            assert_eq!(page.matches(STYLE).count(), 1, "{name}");
            assert_eq!(page.matches(UTIL_JS).count(), 1, "{name}");
            assert!(
                !page.contains(STYLE_MARK) && !page.contains(UTIL_MARK),
                "{name}"
            );
            let (style, script) = (page.find("<style>\n"), page.find("<script>\n"));
            let (Some(style), Some(script)) = (style, script) else {
                panic!("{name}: no <style> or <script>");
            };
            let own = &page[style + 8..page.find(STYLE).unwrap_or(0)];
            assert!(
                own.lines()
                    .all(|l| l.starts_with(".wrap{") || l.starts_with("main.wrap{")),
                "{name}: before the shared style: {own}"
            );
            let end = page.find("</style>").unwrap_or(0);
            assert!(
                page.find(STYLE).is_some_and(|at| at + STYLE.len() <= end),
                "{name}"
            );
            assert!(page.find(UTIL_JS).is_some_and(|at| at > script), "{name}");
            assert!(page.ends_with("</script>\n</body>\n</html>\n"), "{name}");
        }
    }

    #[test]
    fn the_page_is_whole_under_its_csp() {
        assert_eq!(inline_only(PAGE, &csp(&[])), Ok(()));
        let framed = csp(&["https://panel.example".to_string()]);
        assert_eq!(inline_only(PAGE, &framed), Ok(()));
        // The check can fail: a hash next to 'unsafe-inline' turns it off.
        let hashed = csp(&[]).replace(
            "style-src 'unsafe-inline'",
            "style-src 'unsafe-inline' 'sha256-AAAA'",
        );
        assert!(inline_only(PAGE, &hashed).is_err());
        assert!(
            inline_only(
                &PAGE.replace("<script>", "<script src=\"x.js\">"),
                &csp(&[])
            )
            .is_err()
        );
        assert!(inline_only(&format!("{PAGE}<style>"), &csp(&[])).is_err());
    }
}
