//! `remedios stats`: the figures of the running stack, from the same EMF metric lines the
//! functions write to CloudWatch in AWS (`remedios_shared::metrics`), read from the
//! stack's `functions.log`: so the numbers a developer sees are the ones the dashboard
//! will show.

use std::collections::BTreeMap;

/// One row of the summary: a figure, how many samples, and their p50/p90/p99.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub count: usize,
    /// p50, p90, p99 (`None` for a pure count).
    pub percentiles: Option<[f64; 3]>,
    pub unit: &'static str,
}

/// The summary of the metric lines in `log`: per stage, latencies as percentiles and
/// counts by outcome.
pub fn summarize(log: &str) -> Vec<Row> {
    let lines = remedios_shared::metrics::parse_lines(log);
    let mut samples: BTreeMap<String, (Vec<f64>, &'static str)> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut add = |figure: String, value: f64, unit: &'static str| {
        samples
            .entry(figure)
            .or_insert((Vec::new(), unit))
            .0
            .push(value);
    };
    for m in &lines {
        let number = |name: &str| m[name].as_f64();
        let text = |name: &str| m[name].as_str().unwrap_or("?").to_owned();
        match m["Function"].as_str() {
            Some("webhook") => {
                for name in ["Messages", "Statuses", "RefusedSenders", "Quarantined"] {
                    *counts.entry(format!("webhook: {name}")).or_default() +=
                        number(name).unwrap_or(0.0) as usize;
                }
            }
            Some("transcriber") => {
                let model = text("Model");
                if let Some(v) = number("TranscriptionMs") {
                    add(format!("transcription ({model})"), v, "ms");
                }
                if let Some(v) = number("RealTimeFactor") {
                    add(format!("real-time factor ({model})"), v, "x");
                }
                if let Some(v) = number("AudioSeconds") {
                    add(format!("audio ({model})"), v, "s");
                }
            }
            Some("responder") => {
                let reply = text("Reply");
                let content = text("Content");
                if let Some(v) = number("EndToEndMs") {
                    add(format!("end to end: {reply}, {content}"), v, "ms");
                }
                if let Some(v) = number("JobMs") {
                    add(format!("responder job: {reply}, {content}"), v, "ms");
                }
            }
            _ => {}
        }
    }
    let mut rows: Vec<Row> = counts
        .into_iter()
        .map(|(figure, count)| Row {
            figure,
            count,
            percentiles: None,
            unit: "",
        })
        .collect();
    for (figure, (mut values, unit)) in samples {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
        rows.push(Row {
            figure,
            count: values.len(),
            percentiles: Some([at(0.5), at(0.9), at(0.99)]),
            unit,
        });
    }
    rows
}

/// The summary as a table.
pub fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no metrics yet: send a message (`remedios chat`) and look again\n".into();
    }
    let width = rows
        .iter()
        .map(|r| r.figure.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>10}  {:>10}  {:>10}\n",
        "FIGURE", "COUNT", "P50", "P90", "P99"
    );
    for row in rows {
        out.push_str(&format!("{:<width$}  {:>6}", row.figure, row.count));
        if let Some(p) = row.percentiles {
            for v in p {
                out.push_str(&format!("  {:>10}", format!("{v:.2} {}", row.unit)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use remedios_shared::metrics::{Metrics, Unit};

    #[test]
    fn lines_become_counts_and_percentiles_per_stage() {
        let mut log = String::from("{\"level\":\"INFO\",\"message\":\"not a metric\"}\n");
        log.push_str(
            &Metrics::of("webhook")
                .value("Messages", Unit::Count, 2.0)
                .line(0),
        );
        log.push('\n');
        for ms in [100.0, 200.0, 300.0] {
            log.push_str(
                &Metrics::of("responder")
                    .dimension("Reply", "answer")
                    .dimension("Content", "text")
                    .value("EndToEndMs", Unit::Milliseconds, ms)
                    .line(0),
            );
            log.push('\n');
        }
        let rows = summarize(&log);
        let messages = rows
            .iter()
            .find(|r| r.figure == "webhook: Messages")
            .unwrap();
        assert_eq!(messages.count, 2);
        let e2e = rows
            .iter()
            .find(|r| r.figure == "end to end: answer, text")
            .unwrap();
        assert_eq!(e2e.count, 3);
        assert_eq!(e2e.percentiles, Some([200.0, 300.0, 300.0]));
        assert!(table(&rows).contains("end to end: answer, text"));
        assert!(table(&[]).contains("no metrics yet"));
    }
}
