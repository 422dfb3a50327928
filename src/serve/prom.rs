//! The Prometheus text exposition format (version 0.0.4) that both `/metrics` answers
//! write (metrics.rs for the daemon, fleet.rs for the fleet dashboard; the series are
//! in docs/format.md): `# HELP` and `# TYPE` once per family, then its samples, label
//! values escaped as the format wants (backslash, double quote, newline).

use std::fmt::{Display, Write};

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy)]
pub enum Kind {
    Gauge,
    Counter,
}

/// The text being written.
#[derive(Default)]
pub struct Text {
    out: String,
    /// The families whose HELP and TYPE are written.
    families: Vec<String>,
}

impl Text {
    pub fn new() -> Text {
        Text::default()
    }

    /// Starts the family `name` (its HELP and TYPE lines, only the first time) and gives
    /// the handle its samples are written through.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> Family<'_> {
        if !self.families.iter().any(|f| f == name) {
            let kind = match kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            self.families.push(name.to_string());
        }
        Family {
            text: &mut self.out,
            name: name.to_string(),
        }
    }

    /// A family of one sample without labels.
    pub fn one(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help).sample(&[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// One family's samples.
pub struct Family<'a> {
    text: &'a mut String,
    name: String,
}

impl Family<'_> {
    /// `name{label="value",…} value`, or `name value` without labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(&self.name);
        for (i, (k, v)) in labels.iter().enumerate() {
            self.text.push(if i == 0 { '{' } else { ',' });
            self.text.push_str(k);
            self.text.push_str("=\"");
            escape_label(v, self.text);
            self.text.push('"');
        }
        if !labels.is_empty() {
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the format wants it: `\` as `\\`, `"` as `\"`, a newline as `\n`.
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_type_once_per_family_then_its_samples() {
        let mut t = Text::new();
        t.one("a_total", Kind::Counter, "Things counted.", 3);
        let mut f = t.family("b", Kind::Gauge, "Per site.");
        f.sample(&[("site", "x")], 1);
        f.sample(&[("site", "y"), ("k", "v")], "0.500");
        // The same family again: its samples, no second HELP or TYPE.
        t.family("b", Kind::Gauge, "Per site.")
            .sample(&[("site", "z")], 2);
        assert_eq!(
            t.finish(),
            "# HELP a_total Things counted.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Per site.\n# TYPE b gauge\nb{site=\"x\"} 1\n\
             b{site=\"y\",k=\"v\"} 0.500\nb{site=\"z\"} 2\n"
        );
    }

    #[test]
    fn a_family_without_samples_still_says_what_it_is() {
        let mut t = Text::new();
        t.family("none_yet", Kind::Gauge, "Empty.");
        assert_eq!(
            t.finish(),
            "# HELP none_yet Empty.\n# TYPE none_yet gauge\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut t = Text::new();
        t.family("m", Kind::Gauge, "a \\ b\nc \"q\"")
            .sample(&[("site", "a\"b\\c\nd é")], 1);
        assert_eq!(
            t.finish(),
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m gauge\nm{site=\"a\\\"b\\\\c\\nd é\"} 1\n"
        );
    }
}
