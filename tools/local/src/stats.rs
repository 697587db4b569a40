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

/// The summary of the metric lines in `log`: per metric and dimension values (`responder:
/// EndToEndMs (answer, voice)`), counts summed and other values as percentiles. Each line
/// says its metrics' units, so every metric of [`remedios_shared::metrics::SCHEMA`] is
/// shown without a list here to keep in step.
pub fn summarize(log: &str) -> Vec<Row> {
    let lines = remedios_shared::metrics::parse_lines(log);
    let mut samples: BTreeMap<String, (Vec<f64>, &'static str)> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in &lines {
        let directive = &m["_aws"]["CloudWatchMetrics"][0];
        let function = m["Function"].as_str().unwrap_or("?");
        let values: Vec<&str> = directive["Dimensions"][0]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str())
            .filter(|d| *d != "Function")
            .map(|d| m[d].as_str().unwrap_or("?"))
            .collect();
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let Some(name) = metric["Name"].as_str() else {
                continue;
            };
            let Some(value) = m[name].as_f64() else {
                continue;
            };
            let figure = if values.is_empty() {
                format!("{function}: {name}")
            } else {
                format!("{function}: {name} ({})", values.join(", "))
            };
            match metric["Unit"].as_str() {
                Some("Count") => *counts.entry(figure).or_default() += value as usize,
                unit => {
                    let unit = match unit {
                        Some("Milliseconds") => "ms",
                        Some("Seconds") => "s",
                        _ => "x",
                    };
                    samples
                        .entry(figure)
                        .or_insert((Vec::new(), unit))
                        .0
                        .push(value);
                }
            }
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
        let at = |p: f64| percentile(&values, p);
        rows.push(Row {
            figure,
            count: values.len(),
            percentiles: Some([at(0.5), at(0.9), at(0.99)]),
            unit,
        });
    }
    rows
}

/// The `p` quantile (0.5 for the median) of `sorted`, ascending values, by the nearest
/// rank; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[rank]
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
                .dimension("Type", "text")
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
            .find(|r| r.figure == "webhook: Messages (text)")
            .unwrap();
        assert_eq!(messages.count, 2);
        let e2e = rows
            .iter()
            .find(|r| r.figure == "responder: EndToEndMs (answer, text)")
            .unwrap();
        assert_eq!(e2e.count, 3);
        assert_eq!(e2e.percentiles, Some([200.0, 300.0, 300.0]));
        assert!(table(&rows).contains("responder: EndToEndMs (answer, text)"));
        assert!(table(&[]).contains("no metrics yet"));
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 6.0);
        assert_eq!(percentile(&values, 0.9), 9.0);
        assert_eq!(percentile(&values, 1.0), 10.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
