//! `/metrics`: the collector's figures in the Prometheus text exposition format (0.0.4),
//! written by hand from the status figures (one owner: `Status` counts, this only renders).
//! Names and labels: docs/metrics.md.
//!
//! Facility names come from the documents (service names), so they are a label only for the
//! first [`MAX_FACILITY_LABELS`] facilities seen; the rest add up under `facility="other"`,
//! which keeps the series count bounded whatever the senders do.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::status::Status;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Facilities with a label of their own, in order of first use.
pub const MAX_FACILITY_LABELS: usize = 50;

/// The label value of the facilities past the limit.
pub const OTHER: &str = "other";

/// One metric family: its `# HELP`, `# TYPE` and samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

pub fn render(status: &Status) -> String {
    let mut out = Out(String::with_capacity(4096));
    // Per facility, the unlabelled ones summed into `other`.
    let mut by_label: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for (index, name, events, bytes, rotations) in status.facility_figures() {
        let label = if index < MAX_FACILITY_LABELS {
            name
        } else {
            OTHER.to_string()
        };
        let sums = by_label.entry(label).or_default();
        for (sum, n) in sums.iter_mut().zip([events, bytes, rotations]) {
            *sum = sum.saturating_add(n);
        }
    }
    let per_facility = [
        (
            "logcollect_collect_events_written_total",
            "Events written to the facility's files.",
        ),
        (
            "logcollect_collect_bytes_written_total",
            "Bytes written to the facility's files.",
        ),
        (
            "logcollect_collect_rotations_total",
            "Files of the facility rotated.",
        ),
    ];
    for (i, (name, help)) in per_facility.iter().enumerate() {
        out.family(name, "counter", help);
        for (facility, sums) in &by_label {
            out.sample(name, &[("facility", facility)], sums[i] as f64);
        }
    }
    let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed) as f64;
    let counters = [
        (
            "logcollect_collect_messages_total",
            "Messages consumed and written (a message holds one document or an array).",
            load(&status.messages),
        ),
        (
            "logcollect_collect_compressions_total",
            "Rotated files compressed.",
            load(&status.compressions),
        ),
        (
            "logcollect_collect_write_errors_total",
            "Failed attempts to write a message (each is retried, then dead-lettered).",
            load(&status.write_errors),
        ),
        (
            "logcollect_collect_rejected_messages_total",
            "Messages dead-lettered whole to DIR/_rejected/ after failed attempts.",
            load(&status.rejected_messages),
        ),
        (
            "logcollect_collect_cut_documents_total",
            "Documents written cut to --max-document-bytes.",
            load(&status.cut_documents),
        ),
        (
            "logcollect_collect_errors_total",
            "Errors the collector survived, of every kind (see stderr or /api/stats).",
            status.errors() as f64,
        ),
    ];
    for (name, help, value) in counters {
        out.one(name, "counter", help, value);
    }
    out.one(
        "logcollect_collect_open_files",
        "gauge",
        "Files open for writing.",
        load(&status.open_files),
    );
    let backlog = status.backlog.load(Ordering::Relaxed);
    if backlog >= 0 {
        // Absent until first measured, rather than a false 0.
        out.one(
            "logcollect_collect_backlog_messages",
            "gauge",
            "Messages ready in the collector's queue, not yet delivered to it.",
            backlog as f64,
        );
    }
    out.one(
        "logcollect_collect_broker_connected",
        "gauge",
        "1 while consuming from the broker, else 0.",
        f64::from(u8::from(status.connected.load(Ordering::Relaxed))),
    );
    out.one(
        "logcollect_collect_write_failing_seconds",
        "gauge",
        "How long every write has been failing (0 while writing works).",
        status.write_failing_for().map_or(0.0, |d| d.as_secs_f64()),
    );
    out.one(
        "logcollect_collect_healthy",
        "gauge",
        "1 when /healthz answers 200, else 0.",
        f64::from(u8::from(status.health().is_ok())),
    );
    out.one(
        "logcollect_collect_uptime_seconds",
        "gauge",
        "Seconds since the collector started.",
        status.uptime().as_secs_f64(),
    );
    out.0
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
