//! Writing the Prometheus text exposition format (version 0.0.4): a
//! `# HELP` and a `# TYPE` line per metric family, then its samples, one
//! per line, `name{label="value",...} number`.

use std::fmt::{Display, Write as _};

use crate::util::histogram::Histogram;

/// A metric family's type.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The text being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family. Its samples must follow before the next family.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_into(&mut self.text, v);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram's samples (`_bucket` per bound, `_sum`, `_count`),
    /// with `labels` on each. The family must have been started.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", ""));
        let last = with_le.len() - 1;
        for (le, n) in h.cumulative() {
            with_le[last].1 = le;
            self.sample(&bucket, &with_le, n);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds());
        self.sample(&format!("{name}_count"), labels, h.count());
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.text.into_bytes()
    }
}

/// A label value with `\`, `"` and newline escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
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
    use std::time::Duration;

    #[test]
    fn writes_families_samples_and_escapes() {
        let mut e = Exposition::default();
        e.single("a_total", Kind::Counter, "Things.", 3);
        e.family("b", Kind::Gauge, "Per thing.");
        e.sample("b", &[("topic", "x\"y\\z\nw"), ("partition", "1")], 7);
        let text = String::from_utf8(e.into_bytes()).unwrap();
        assert_eq!(
            text,
            "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Per thing.\n# TYPE b gauge\n\
             b{topic=\"x\\\"y\\\\z\\nw\",partition=\"1\"} 7\n"
        );
    }

    #[test]
    fn histograms_end_with_inf_sum_and_count() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(2));
        let mut e = Exposition::default();
        e.family("d_seconds", Kind::Histogram, "Durations.");
        e.histogram("d_seconds", &[("thread", "helper")], &h);
        let text = String::from_utf8(e.into_bytes()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "d_seconds_bucket{thread=\"helper\",le=\"0.00005\"} 0"
        );
        assert!(lines.contains(&"d_seconds_bucket{thread=\"helper\",le=\"0.0025\"} 1"));
        let n = lines.len();
        assert_eq!(
            lines[n - 3],
            "d_seconds_bucket{thread=\"helper\",le=\"+Inf\"} 1"
        );
        assert_eq!(lines[n - 2], "d_seconds_sum{thread=\"helper\"} 0.002");
        assert_eq!(lines[n - 1], "d_seconds_count{thread=\"helper\"} 1");
    }
}
