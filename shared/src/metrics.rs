//! Metrics as CloudWatch embedded metric format (EMF) lines in the logs the functions
//! already write: CloudWatch Logs turns each line into metric data points, so measuring
//! costs no API call and no extra permission.
//!
//! A [`Metrics`] is one line: a few dimensions (the function, and at most a couple of
//! low-cardinality ones such as the outcome or the model) and its values. No user
//! identity, message id or text ever goes in a metric: dimensions are names of things we
//! chose, values are numbers.
//!
//! Written by hand rather than with a crate: the format is one JSON object per line
//! (`_aws.CloudWatchMetrics` naming the namespace, the dimension set and each metric's
//! unit, the values beside it), and the crates that write it do so behind the `metrics`
//! facade with a global recorder and a flush, which a function handling one batch at a
//! time does not need.

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every Remedios metric.
pub const NAMESPACE: &str = "Remedios";

/// One kind of line a function writes: its dimension set (CloudWatch keeps a metric per
/// exact set, so a dashboard must name all of them) and its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub function: &'static str,
    pub dimensions: &'static [&'static str],
    pub metrics: &'static [&'static str],
}

const fn line(
    function: &'static str,
    dimensions: &'static [&'static str],
    metrics: &'static [&'static str],
) -> Line {
    Line {
        function,
        dimensions,
        metrics,
    }
}

/// Every line the functions write. A metric name is in one line of its function, so the
/// name tells the dimensions. The template's dashboard and alarms name only these, and
/// every line written is checked against them (in debug builds at `emit`, and by the
/// end-to-end test on the local stack's logs).
///
/// `Outcome` (of a job, a record or a model call), `Cause` (of a retry), `Type`,
/// `Language`, `Reply` and `Content` take values from small
/// fixed sets the code names (`Host` is a model host's position in the list, 1 first) (a language is one of whisper's codes); `Model` is the model
/// file's name.
pub const SCHEMA: &[Line] = &[
    line("webhook", &["Function", "Type"], &["Messages"]),
    line(
        "webhook",
        &["Function"],
        &["Statuses", "RefusedSenders", "OtherNumbers", "Quarantined"],
    ),
    line(
        "transcriber",
        &["Function", "Model"],
        &["AudioSeconds", "TranscriptionMs", "RealTimeFactor"],
    ),
    // Where a voice note's time goes before whisper: fetching the media (lookup,
    // download from Meta's host, storing it in S3) and decoding it to samples.
    line("transcriber", &["Function"], &["DownloadMs", "DecodeMs"]),
    line("transcriber", &["Function", "Language"], &["VoiceNotes"]),
    // A cold start without the whisper model, and each voice note it could not hear.
    line("transcriber", &["Function"], &["SpeechModelUnavailable"]),
    line("transcriber", &["Function", "Outcome"], &["Forwarded"]),
    // A message sent on to its speech lane (`transcriber::lanes`), to be handled there.
    line("transcriber", &["Function"], &["Laned"]),
    line("transcriber", &["Function", "Cause"], &["Retries"]),
    // A state object that did not parse, moved aside (`Store::get_state`).
    line("transcriber", &["Function"], &["StateQuarantined"]),
    line(
        "responder",
        &["Function", "Reply", "Content"],
        &["EndToEndMs", "Parts", "JobMs", "SendMs"],
    ),
    line("responder", &["Function", "Outcome"], &["Jobs"]),
    line(
        "responder",
        &["Function", "Outcome"],
        &["ModelCalls", "ModelMs", "PromptTokens", "CompletionTokens"],
    ),
    // Each request to one model host (a job's call may ask several), by the host's
    // position (1 for GPT4ALL_URL, then MODEL_HOSTS in order; never its URL).
    line(
        "responder",
        &["Function", "Host", "Outcome"],
        &["ModelHostCalls", "ModelHostMs"],
    ),
    // Each request a host refused as misconfigured (404, 401, 403, an unknown model),
    // whether or not another host answered instead.
    line("responder", &["Function"], &["ModelHostsMisconfigured"]),
    line("responder", &["Function", "Cause"], &["Retries"]),
    // Each message sent to a user, by what it was (an answer's parts, a transcript, a
    // fixed text by reason, an apology): since 1 October 2026 Meta bills every free-form
    // service message.
    line("responder", &["Function", "Kind"], &["BilledMessages"]),
    // Material files left out of the knowledge index (not UTF-8, too big, over the total),
    // at every load of the index.
    line("responder", &["Function"], &["KnowledgeFilesSkipped"]),
    line("responder", &["Function"], &["StateQuarantined"]),
    // Conversations handed to a person (`responder::handoff`), by the way in (`asked`,
    // `echo`); how long a user who asked waited for a person's first message; and the
    // returns to the bot by cause (`user`, `staff`, `timeout`, `quiet`).
    line("responder", &["Function", "Way"], &["Handoffs"]),
    line("responder", &["Function"], &["HandoffFirstReplyMs"]),
    line("responder", &["Function", "Cause"], &["HandoffReturns"]),
    // A wait for a person whose timer could not be queued (`responder::waiting`): it then
    // ends with the user's next message instead of a notice.
    line("responder", &["Function"], &["HandoffTimersLost"]),
    // Answers spoken as voice notes (`responder::speak`): how long speaking took and its
    // real-time factor, the voice messages sent, and the answers that went as text after
    // all, by why.
    line(
        "responder",
        &["Function"],
        &["SynthesisMs", "SynthesisRealTimeFactor", "VoiceReplies"],
    ),
    line("responder", &["Function", "Cause"], &["VoiceFallbacks"]),
];

/// The line of `function` that holds `metric`, from [`SCHEMA`].
pub fn line_of(function: &str, metric: &str) -> Option<&'static Line> {
    SCHEMA
        .iter()
        .find(|l| l.function == function && l.metrics.contains(&metric))
}

/// The unit of a metric value, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
    /// A ratio (a real-time factor).
    None,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::None => "None",
        }
    }
}

/// One EMF line: dimensions and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, Unit, f64)>,
}

impl Metrics {
    /// Metrics of `function` (`webhook`, `transcriber`, `responder`).
    pub fn of(function: &str) -> Self {
        Metrics {
            dimensions: vec![("Function", function.to_owned())],
            values: Vec::new(),
        }
    }

    /// Adds a dimension. Keep them few and their values a small fixed set.
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// Adds a value.
    pub fn value(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.values.push((name, unit, value));
        self
    }

    /// The line at `timestamp_ms` (Unix milliseconds).
    pub fn line(&self, timestamp_ms: i64) -> String {
        let mut object = Map::new();
        object.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions.iter().map(|(n, _)| *n).collect::<Vec<_>>()],
                    "Metrics": self.values.iter()
                        .map(|(n, u, _)| json!({ "Name": n, "Unit": u.name() }))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            object.insert((*name).to_owned(), Value::from(value.as_str()));
        }
        for (name, _, value) in &self.values {
            // JSON has no NaN or infinity; CloudWatch would refuse the line.
            let value = if value.is_finite() { *value } else { 0.0 };
            object.insert((*name).to_owned(), json!(value));
        }
        Value::Object(object).to_string()
    }

    /// Whether this line is one [`SCHEMA`] lists: each value's line has exactly these
    /// dimensions, in this order.
    pub fn follows_schema(&self) -> bool {
        let function = self.dimensions[0].1.as_str();
        !self.values.is_empty()
            && self.values.iter().all(|(name, _, _)| {
                line_of(function, name).is_some_and(|l| {
                    l.dimensions
                        .iter()
                        .copied()
                        .eq(self.dimensions.iter().map(|(n, _)| *n))
                })
            })
    }

    /// Writes the line to stdout, where Lambda sends it to CloudWatch Logs.
    pub fn emit(&self) {
        debug_assert!(
            self.follows_schema(),
            "a metric line outside SCHEMA: {self:?}"
        );
        println!("{}", self.line(crate::clock::now_ms()));
    }
}

/// The EMF lines in a log, parsed (for tests and the local summary).
pub fn parse_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.contains("\"_aws\""))
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_embedded_metric_format_with_its_dimensions_and_values() {
        let line = Metrics::of("transcriber")
            .dimension("Model", "ggml-base.bin")
            .value("AudioSeconds", Unit::Seconds, 4.5)
            .value("RealTimeFactor", Unit::None, f64::NAN)
            .line(1_764_000_000_000);
        let parsed = parse_lines(&format!("some log line\n{line}\n"));
        assert_eq!(parsed.len(), 1);
        let v = &parsed[0];
        let aws = &v["_aws"];
        assert_eq!(aws["Timestamp"], 1_764_000_000_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Function", "Model"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                { "Name": "AudioSeconds", "Unit": "Seconds" },
                { "Name": "RealTimeFactor", "Unit": "None" },
            ])
        );
        assert_eq!(v["Function"], "transcriber");
        assert_eq!(v["Model"], "ggml-base.bin");
        assert_eq!(v["AudioSeconds"], 4.5);
        assert_eq!(v["RealTimeFactor"], 0.0, "no NaN in JSON");
    }

    #[test]
    fn the_schema_gives_each_metric_one_line_of_its_function() {
        for l in SCHEMA {
            assert_eq!(l.dimensions[0], "Function", "{l:?}");
            for metric in l.metrics {
                assert_eq!(
                    line_of(l.function, metric),
                    Some(l),
                    "{metric} is in one line"
                );
            }
        }
        let ok = Metrics::of("transcriber")
            .dimension("Model", "ggml-base.bin")
            .value("AudioSeconds", Unit::Seconds, 1.0);
        assert!(ok.follows_schema());
        let wrong_dimensions = Metrics::of("transcriber").value("AudioSeconds", Unit::Seconds, 1.0);
        assert!(!wrong_dimensions.follows_schema());
        let unknown = Metrics::of("webhook").value("Nope", Unit::Count, 1.0);
        assert!(!unknown.follows_schema());
        assert!(
            !Metrics::of("responder").follows_schema(),
            "a line has a value"
        );
    }
}
