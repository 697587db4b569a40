//! The bucket, the build, the HTTP API, the alarms and the dashboard.

use super::*;

#[test]
fn the_bucket_is_encrypted_private_tls_only_and_personal_data_expires() {
    let template = template();
    let stack = stack(
        &template,
        &[
            ("MessageRetentionDays", "14"),
            ("ConversationRetentionDays", "30"),
        ],
    );
    let bucket = stack.bucket(BUCKET).unwrap();
    assert_eq!(bucket.encryption.as_deref(), Some("AES256"));
    assert!(
        bucket.public_access_blocked,
        "all four public access blocks"
    );
    assert!(
        bucket.tls_only,
        "a bucket policy must deny requests without TLS"
    );
    assert!(
        !bucket.versioned,
        "old versions would outlive the expiry of personal data"
    );
    assert!(
        bucket.retained_on_delete,
        "deleting the stack must not delete conversations"
    );
    for prefix in [
        "messages/",
        "media/",
        "transcripts/",
        "replies/",
        "quarantine/",
    ] {
        assert_eq!(bucket.expiry_of(prefix), Some(14), "{prefix}");
    }
    assert_eq!(bucket.expiry_of("conversations/"), Some(30));
    assert!(
        bucket
            .lifecycle
            .iter()
            .any(|r| r.prefix.is_none() && r.abort_incomplete_upload_days == Some(1))
    );
}

#[test]
fn functions_are_built_by_cargo_lambda_for_al2023() {
    let template = template();
    let stack = stack(&template, &[]);
    let root = paths::workspace_root();
    let mut seen = Vec::new();
    for id in template.resources_of_type(SERVERLESS_FUNCTION) {
        let f = function(&stack, id);
        seen.push(id.to_owned());
        assert_eq!(f.runtime.as_deref(), Some("provided.al2023"), "{id}");
        assert_eq!(f.handler.as_deref(), Some("bootstrap"), "{id}");
        let expected_arch = if id == TRANSCRIBER_FUNCTION {
            "x86_64"
        } else {
            "arm64"
        };
        assert_eq!(
            f.architectures,
            [expected_arch],
            "{id}: see infra/README.md, Architecture"
        );
        let crate_dir = root.join("infra").join(f.code_uri.as_deref().unwrap());
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap_or_else(|e| {
            panic!(
                "{id}: CodeUri {} has no Cargo.toml: {e}",
                crate_dir.display()
            )
        });
        if id == TRANSCRIBER_FUNCTION {
            // Two builds (AVX2 as bootstrap, AVX-512 beside it): its Makefile has sam's
            // target for this function and hands it to infra/build.sh.
            assert_eq!(f.build_method.as_deref(), Some("makefile"), "{id}");
            let makefile = std::fs::read_to_string(crate_dir.join("Makefile"))
                .unwrap_or_else(|e| panic!("{id}: no Makefile in its CodeUri: {e}"));
            assert!(
                makefile.contains(&format!("build-{id}:")),
                "{id}: {makefile}"
            );
            assert!(
                makefile.contains("/infra/build.sh\" transcriber \"$(ARTIFACTS_DIR)\""),
                "{id}: {makefile}"
            );
            let build = std::fs::read_to_string(root.join("infra/build.sh")).unwrap();
            for feature in transcriber::cpu::AVX512_FEATURES {
                let flag = match feature {
                    "avx512vnni" => "GGML_AVX512_VNNI=ON",
                    _ => "GGML_AVX512=ON",
                };
                assert!(
                    build.contains(flag),
                    "infra/build.sh lacks {flag} for {feature}"
                );
            }
            assert!(manifest.contains("name = \"transcriber\""), "{id}");
            continue;
        }
        assert_eq!(f.build_method.as_deref(), Some("rust-cargolambda"), "{id}");
        let binary = f
            .binary
            .as_deref()
            .unwrap_or_else(|| panic!("{id}: BuildProperties.Binary"));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{id}: {} builds no binary {binary}",
            crate_dir.display()
        );
    }
    seen.sort();
    let mut expected = FUNCTIONS.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(seen, expected);
}

#[test]
fn the_webhook_answers_get_and_post_on_one_path_whose_url_is_an_output() {
    let template = template();
    let stack = stack(&template, &[]);
    let webhook = function(&stack, WEBHOOK_FUNCTION);
    let routes: BTreeSet<(String, String)> = webhook
        .http_routes()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from([
            ("GET".into(), "/webhook".into()),
            ("POST".into(), "/webhook".into())
        ])
    );
    assert!(
        webhook
            .events
            .iter()
            .all(|e| matches!(e.source, EventSource::HttpApi(_)))
    );
    let url = stack
        .eval(&template.outputs["WebhookUrl"].value)
        .unwrap()
        .unwrap();
    assert_eq!(
        url.as_str(),
        Some("https://${WebhookApi}.execute-api.us-east-1.amazonaws.com/webhook")
    );
    for output in [
        "BucketName",
        "InboundQueueUrl",
        "ReplyQueueUrl",
        "InboundDeadLetterQueueUrl",
        "ReplyDeadLetterQueueUrl",
    ] {
        assert!(template.outputs.contains_key(output), "output {output}");
    }
    assert!(
        webhook.timeout.unwrap() < Duration::from_secs(30),
        "HTTP APIs give up after 30 s"
    );
}

#[test]
fn every_dead_letter_queue_has_an_alarm_on_its_depth() {
    let template = template();
    let stack = stack(&template, &[]);
    let alarmed: BTreeSet<String> = template
        .resources_of_type("AWS::CloudWatch::Alarm")
        .filter_map(|id| {
            let alarm = stack
                .eval(&template.resources[id].properties)
                .unwrap()
                .unwrap();
            // The others watch the functions' own metrics (the next test).
            (alarm["Namespace"].as_str() == Some("AWS/SQS")).then_some((id, alarm))
        })
        .map(|(id, alarm)| {
            assert_eq!(
                alarm["MetricName"].as_str(),
                Some("ApproximateNumberOfMessagesVisible"),
                "{id}"
            );
            assert_eq!(alarm["Threshold"].as_i64(), Some(1), "{id}");
            let dimension = alarm["Dimensions"][0]["Value"].as_str().unwrap();
            dimension
                .strip_prefix("${")
                .and_then(|d| d.strip_suffix(".QueueName}"))
                .unwrap_or_else(|| panic!("{id}: {dimension}"))
                .to_owned()
        })
        .collect();
    assert_eq!(
        alarmed,
        BTreeSet::from([
            "InboundDeadLetterQueue".into(),
            "ReplyDeadLetterQueue".into()
        ])
    );
}

#[test]
fn cloudwatch_may_publish_to_the_alarm_topic() {
    let template = template();
    let stack = stack(&template, &[("AlarmEmail", "ops@example.com")]);
    let topic = stack
        .eval(&template.resources["AlarmTopic"].properties)
        .unwrap()
        .unwrap();
    let key = topic["KmsMasterKeyId"].as_str().unwrap_or_default();
    assert!(
        !key.starts_with("alias/aws/"),
        "CloudWatch cannot use the AWS-managed key {key}: its alarms would never be delivered"
    );
    let key_id = key
        .strip_prefix("${")
        .and_then(|k| k.strip_suffix('}'))
        .unwrap_or_else(|| panic!("the topic key is one of the template's keys: {key}"));
    let policy = stack
        .eval(&template.resources[key_id].properties["KeyPolicy"])
        .unwrap()
        .unwrap();
    let statements = policy["Statement"].as_sequence().unwrap();
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com"))
        .expect("the key policy names CloudWatch");
    assert_eq!(cloudwatch["Effect"].as_str(), Some("Allow"));
    let actions: Vec<&str> = cloudwatch["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(actions.contains(&"kms:Decrypt"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a.starts_with("kms:GenerateDataKey")),
        "{actions:?}"
    );
}

/// A metric a dashboard widget or an alarm names: namespace, name, dimensions.
type NamedMetric = (String, String, BTreeMap<String, String>);

/// The metrics of a dashboard widget's `metrics` rows, `"..."` rows expanded as
/// CloudWatch does (the previous row, its last values replaced by the ones given).
fn widget_metrics(rows: &serde_json::Value) -> Vec<NamedMetric> {
    let mut out = Vec::new();
    let mut previous: Vec<String> = Vec::new();
    for row in rows.as_array().into_iter().flatten() {
        let items: Vec<String> = row
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if items.is_empty() {
            continue; // An expression (SEARCH) row: checked on its own.
        }
        let full = if items[0] == "..." {
            let given = &items[1..];
            let mut full = previous.clone();
            let keep = full.len().saturating_sub(given.len());
            full.truncate(keep);
            full.extend(given.iter().cloned());
            full
        } else {
            items
        };
        previous = full.clone();
        let dimensions = full[2..]
            .chunks(2)
            .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
            .collect();
        out.push((full[0].clone(), full[1].clone(), dimensions));
    }
    out
}

/// A Remedios metric is one the code writes, with the code's exact dimension set and the
/// function it names.
fn assert_written_by_the_code(what: &str, (namespace, name, dimensions): &NamedMetric) {
    if namespace != remedios_shared::metrics::NAMESPACE {
        return;
    }
    let function = dimensions
        .get("Function")
        .map(String::as_str)
        .unwrap_or_default();
    let line = remedios_shared::metrics::line_of(function, name)
        .unwrap_or_else(|| panic!("{what}: {function} writes no {name}: {dimensions:?}"));
    let keys: Vec<&str> = dimensions.keys().map(String::as_str).collect();
    let mut wanted = line.dimensions.to_vec();
    wanted.sort_unstable();
    assert_eq!(
        keys, wanted,
        "{what}: {name} is written with exactly these dimensions"
    );
}

#[test]
fn the_dashboard_and_the_alarms_name_only_metrics_the_code_writes() {
    let template = template();
    let stack = stack(&template, &[]);
    let body = stack
        .eval(&template.resources["Dashboard"].properties["DashboardBody"])
        .expect("the dashboard body evaluates")
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("a dashboard body");
    let body: serde_json::Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let mut ours = 0;
    for widget in body["widgets"].as_array().expect("widgets") {
        let title = widget["properties"]["title"].as_str().unwrap_or("a widget");
        let rows = &widget["properties"]["metrics"];
        for metric in widget_metrics(rows) {
            assert_written_by_the_code(title, &metric);
            ours += usize::from(metric.0 == remedios_shared::metrics::NAMESPACE);
        }
        for row in rows.as_array().into_iter().flatten() {
            if let Some(search) = row[0]["expression"].as_str() {
                // SEARCH('{Namespace,Dim,Dim} MetricName="Name"', ...): the schema has a
                // line with that name and exactly those dimensions.
                let schema: Vec<&str> = search
                    .split('{')
                    .nth(1)
                    .and_then(|r| r.split('}').next())
                    .expect("a SEARCH names its dimension schema")
                    .split(',')
                    .map(str::trim)
                    .collect();
                let name = search
                    .split("MetricName=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .expect("a SEARCH names its metric");
                assert_eq!(schema[0], remedios_shared::metrics::NAMESPACE, "{title}");
                let mut wanted = schema[1..].to_vec();
                wanted.sort_unstable();
                assert!(
                    remedios_shared::metrics::SCHEMA.iter().any(|line| {
                        let mut dimensions = line.dimensions.to_vec();
                        dimensions.sort_unstable();
                        line.metrics.contains(&name) && dimensions == wanted
                    }),
                    "{title}: the code writes no {name} with dimensions {wanted:?}"
                );
                ours += 1;
            }
        }
    }
    assert!(ours >= 8, "the dashboard shows our own figures ({ours})");

    let mut alarms = 0;
    for (id, resource) in &template.resources {
        if resource.kind != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let properties = stack
            .eval(&resource.properties)
            .expect("the alarm evaluates")
            .expect("alarm properties");
        let mut named: Vec<NamedMetric> = Vec::new();
        let dims = |v: &serde_norway::Value| -> BTreeMap<String, String> {
            v.as_sequence()
                .into_iter()
                .flatten()
                .map(|d| {
                    (
                        d["Name"].as_str().unwrap_or_default().to_owned(),
                        d["Value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        if let Some(name) = properties["MetricName"].as_str() {
            named.push((
                properties["Namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                name.to_owned(),
                dims(&properties["Dimensions"]),
            ));
        }
        for m in properties["Metrics"].as_sequence().into_iter().flatten() {
            let metric = &m["MetricStat"]["Metric"];
            if let Some(name) = metric["MetricName"].as_str() {
                named.push((
                    metric["Namespace"].as_str().unwrap_or_default().to_owned(),
                    name.to_owned(),
                    dims(&metric["Dimensions"]),
                ));
            }
        }
        assert!(!named.is_empty(), "{id} names a metric");
        for metric in &named {
            assert_written_by_the_code(id, metric);
        }
        // Every alarm reaches the (publishable) alarm topic when an e-mail is set.
        let topic = stack_with_email_actions(&template, id);
        assert!(topic, "{id} notifies the alarm topic");
        alarms += 1;
    }
    assert!(
        alarms >= 5,
        "dead letters, slow answers, apologies, the model host down: {alarms} alarms"
    );
}

/// Whether alarm `id` sends to the alarm topic in a stack with an alarm e-mail.
fn stack_with_email_actions(template: &Template, id: &str) -> bool {
    let stack = stack(template, &[("AlarmEmail", "ops@example.com")]);
    let actions = stack
        .eval(&template.resources[id].properties["AlarmActions"])
        .expect("alarm actions evaluate")
        .unwrap_or_default();
    actions.as_sequence().is_some_and(|a| {
        a.iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("AlarmTopic")))
    })
}
