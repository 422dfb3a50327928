//! The backups web page served at `GET /`: one self-contained HTML file (CSS and JS
//! inline, no external resources: the Pi is often offline), compiled into the binary.

pub const PAGE: &str = include_str!("page.html");

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
