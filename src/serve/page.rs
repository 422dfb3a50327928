//! The backups web page served at `GET /`: one self-contained HTML file (CSS and JS
//! inline, no external resources: the Pi is often offline), compiled into the binary.
//!
//! The `fleet serve` dashboard (fleet.rs) has the same look: the style both pages share
//! lives once, in style.css, and so do their script helpers (`el()`, sizes, dates,
//! `ago`, the token dialog), in util.js. Each page's source holds a marker line where
//! they go (`/* style.css */` first in its `<style>`, after its own page-width rules;
//! `// util.js` in its `<script>`), and build.rs replaces it at build time, then
//! gzip-compresses the page: the binary holds only the compressed bytes (29 KB for
//! 87 KB: 51 KB off the armv6 binary), sent as they are to a client that takes gzip (every browser)
//! and inflated for one that does not. Each page is still served as one self-contained
//! answer under the same Content-Security-Policy, and a marker missing or doubled
//! fails the build.

use std::io::Read;

use crate::http::server::{Request, Response};

/// The style both pages share; each page's own rules follow it (tests: build.rs puts
/// it in the pages).
#[cfg(test)]
pub const STYLE: &str = include_str!("style.css");
/// The marker line in each page's `<style>` that [`STYLE`] replaces.
#[cfg(test)]
pub const STYLE_MARK: &str = "/* style.css */\n";
/// The helpers both pages' scripts use: `el(tag, attrs, ...kids)`, `bytes`, `num`,
/// `wallClock`, `agoSaying`, `bearer`.
#[cfg(test)]
pub const UTIL_JS: &str = include_str!("util.js");
/// The marker line in each page's `<script>` that [`UTIL_JS`] replaces.
#[cfg(test)]
pub const UTIL_MARK: &str = "// util.js\n";

/// The page, gzip-compressed by build.rs.
pub const PAGE_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/page.html.gz"));

/// The text of a page compressed by build.rs (empty if it could not be inflated, which
/// the tests rule out: the bytes are the build's own).
pub fn text(gz: &[u8]) -> String {
    let mut s = String::new();
    if flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut s)
        .is_err()
    {
        s.clear();
    }
    s
}

/// Whether an `Accept-Encoding` admits gzip: `gzip` (or `x-gzip`, or `*`) listed without
/// `q=0` (RFC 9110, 12.5.3). No header: no (identity only).
pub fn takes_gzip(accept: Option<&str>) -> bool {
    accept.unwrap_or("").split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let zero = parts.any(|p| {
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|v| v == 0.0))
        });
        ["gzip", "x-gzip", "*"]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(coding))
            && !zero
    })
}

/// `GET /` of a page (`gz`, from build.rs) under `csp`: the compressed bytes to a client
/// that takes gzip, else the text.
pub fn serve(gz: &'static [u8], req: &Request, csp: &str) -> Response {
    let html = "text/html; charset=utf-8";
    let r = if takes_gzip(req.header("Accept-Encoding")) {
        Response::new(200, html, gz.to_vec()).with_header("Content-Encoding", "gzip")
    } else {
        Response::new(200, html, text(gz).into_bytes())
    };
    r.with_header("Vary", "Accept-Encoding")
        .with_header("Content-Security-Policy", csp)
}

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
    fn accept_encoding_gzip_is_read_as_rfc_9110_says() {
        for yes in [
            "gzip",
            "gzip, deflate, br, zstd",
            "br;q=1.0, GZIP;q=0.5",
            "x-gzip",
            "*",
            "deflate, *;q=0.1",
            "gzip;q=0.001",
        ] {
            assert!(takes_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip; q=0.000",
            "gzipx",
            "*;q=0",
        ] {
            assert!(!takes_gzip(Some(no)), "{no}");
        }
        assert!(!takes_gzip(None));
    }

    #[test]
    fn the_compressed_pages_inflate_whole() {
        for gz in [PAGE_GZ, crate::serve::fleet::PAGE_GZ] {
            let page = text(gz);
            assert!(page.starts_with("<!doctype html>"));
            assert!(page.ends_with("</html>\n"));
            // Compressed to well under a half.
            assert!(gz.len() * 2 < page.len(), "{} of {}", gz.len(), page.len());
        }
        assert_eq!(text(b"not gzip"), "");
    }

    /// Both served pages: the shared style first in their one `<style>` (after only
    /// their own page-width rules), util.js in their one `<script>`, no marker left.
    #[test]
    fn both_pages_embed_the_shared_style_and_helper_once() {
        for (name, gz) in [("page", PAGE_GZ), ("fleet", crate::serve::fleet::PAGE_GZ)] {
            let page = text(gz);
            let page = page.as_str();
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
        let page = text(PAGE_GZ);
        #[allow(non_snake_case)]
        let PAGE = page.as_str();
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
