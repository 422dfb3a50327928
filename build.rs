//! The two web pages (src/serve/page.rs): each page's source with the shared style
//! (style.css) and script helpers (util.js) put in place of its marker lines, then
//! gzip-compressed into OUT_DIR. The binary holds only the compressed pages (29 KB for
//! 87 KB: the armv6 binary is 51 KB smaller) and sends them as they are to a
//! browser (`Accept-Encoding: gzip`), which also makes the page load faster over a
//! club's Wi-Fi. A marker missing or doubled fails the build.

use std::io::Write;

/// `src` with its one `mark` replaced by `with`.
fn splice(name: &str, src: &str, mark: &str, with: &str) -> String {
    let n = src.matches(mark).count();
    assert!(
        n == 1,
        "src/serve/{name}.html: the marker {mark:?} is there {n} times, not once"
    );
    src.replacen(mark, with, 1)
}

fn read(path: &str) -> String {
    println!("cargo:rerun-if-changed={path}");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn main() {
    let out = std::env::var("OUT_DIR").unwrap_or_else(|e| panic!("OUT_DIR: {e}"));
    let style = read("src/serve/style.css");
    let util = read("src/serve/util.js");
    for name in ["page", "fleet"] {
        let src = read(&format!("src/serve/{name}.html"));
        let page = splice(name, &src, "/* style.css */\n", &style);
        let page = splice(name, &page, "// util.js\n", &util);
        // mtime 0 in the header (flate2's default): the same bytes at every build.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gz = gz
            .write_all(page.as_bytes())
            .and_then(|()| gz.finish())
            .unwrap_or_else(|e| panic!("gzip of {name}: {e}"));
        let path = format!("{out}/{name}.html.gz");
        std::fs::write(&path, gz).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}
