//! The queues, their dead-letter queues and the functions that consume them.

use super::*;

#[test]
fn sam_validate_lint_passes() {
    let sam = paths::venv_bin("sam");
    assert!(
        sam.exists(),
        "the SAM CLI is not at {}: run scripts/bootstrap.sh (aws-sam-cli is in scripts/requirements-dev.txt)",
        sam.display()
    );
    let infra_dir = paths::workspace_root().join("infra");
    let out = Command::new(&sam)
        .args(["validate", "--lint", "-t", "template.yaml"])
        .current_dir(&infra_dir)
        // Offline: a region for the validator, no telemetry, no credentials needed.
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_REGION", REGION)
        .env("SAM_CLI_TELEMETRY", "0")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", sam.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("is a valid SAM Template"),
        "sam validate --lint failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn every_queue_has_a_fifo_dead_letter_queue_that_outlives_it() {
    let template = template();
    let stack = stack(&template, &[]);
    let queues: Vec<_> = template.resources_of_type("AWS::SQS::Queue").collect();
    let targets: BTreeSet<String> = queues
        .iter()
        .filter_map(|id| {
            stack
                .queue(id)
                .unwrap()
                .redrive
                .map(|r| r.dead_letter_queue)
        })
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            "InboundDeadLetterQueue".into(),
            "ReplyDeadLetterQueue".into()
        ])
    );
    for id in &queues {
        let queue = stack.queue(id).unwrap();
        assert!(queue.encrypted, "{id} is not encrypted at rest");
        assert!(queue.fifo, "{id} is not a FIFO queue");
        assert!(
            !queue.content_based_deduplication,
            "{id}: we set deduplication ids ourselves"
        );
        if targets.contains(*id) {
            assert!(
                queue.redrive.is_none(),
                "dead-letter queue {id} redrives further"
            );
            continue;
        }
        let redrive = queue
            .redrive
            .unwrap_or_else(|| panic!("queue {id} has no dead-letter queue"));
        let dlq = stack.queue(&redrive.dead_letter_queue).unwrap();
        assert!(
            dlq.fifo,
            "the dead-letter queue of FIFO queue {id} must be FIFO"
        );
        assert!(
            dlq.message_retention > queue.message_retention,
            "{id}'s dead-letter queue keeps messages {:?}, not longer than the queue ({:?})",
            dlq.message_retention,
            queue.message_retention
        );
        assert!(
            (2..=20).contains(&redrive.max_receive_count),
            "{id}: maxReceiveCount {}",
            redrive.max_receive_count
        );
    }
}

#[test]
fn every_sqs_consumer_reports_batch_item_failures_with_bounded_batches_and_concurrency() {
    let template = template();
    let stack = stack(&template, &[]);
    let mut consumed = BTreeSet::new();
    for id in template.resources_of_type(SERVERLESS_FUNCTION) {
        for event in function(&stack, id).sqs_events() {
            assert!(
                event.report_batch_item_failures,
                "{id}: an SQS event source without ReportBatchItemFailures retries whole batches"
            );
            assert_eq!(
                event.batch_size,
                Some(1),
                "{id}: one message per invocation"
            );
            assert!(
                event.maximum_concurrency.is_some_and(|c| c >= 2),
                "{id}: set ScalingConfig.MaximumConcurrency (2 or more)"
            );
            assert!(
                consumed.insert(event.queue.clone()),
                "{} has two consumers",
                event.queue
            );
        }
    }
    assert_eq!(
        consumed,
        BTreeSet::from([INBOUND_QUEUE.to_owned(), REPLY_QUEUE.to_owned()])
    );
    let responder = stack.consumer_of(REPLY_QUEUE).unwrap();
    assert_eq!(
        responder.maximum_concurrency,
        Some(2),
        "the GPT4All host answers two requests at a time by default"
    );
}

/// Every value a function's timeout parameter may take.
fn timeout_values(template: &Template, function_id: &str) -> Vec<String> {
    let raw = &template.resources[function_id].properties["Timeout"];
    let parameter = template
        .referenced_parameter(raw)
        .unwrap_or_else(|| panic!("{function_id}: Timeout should be a parameter"));
    let allowed = template.parameters[parameter]
        .allowed_values
        .as_ref()
        .unwrap_or_else(|| panic!("{parameter} should list its allowed values"));
    allowed
        .iter()
        .map(|v| match v {
            serde_norway::Value::Number(n) => n.to_string(),
            serde_norway::Value::String(s) => s.clone(),
            other => panic!("{parameter}: {other:?}"),
        })
        .collect()
}

#[test]
fn visibility_timeouts_are_at_least_six_times_the_consumer_timeout_for_every_allowed_timeout() {
    let template = template();
    let mut checked = 0;
    for id in template.resources_of_type(SERVERLESS_FUNCTION) {
        let base = stack(&template, &[]);
        if function(&base, id).sqs_events().next().is_none() {
            continue;
        }
        let parameter = template
            .referenced_parameter(&template.resources[id].properties["Timeout"])
            .unwrap()
            .to_owned();
        for value in timeout_values(&template, id) {
            let stack = stack(&template, &[(&parameter, &value)]);
            let f = function(&stack, id);
            let timeout = f.timeout.unwrap();
            for event in f.sqs_events() {
                let queue = stack.queue(&event.queue).unwrap();
                let batching =
                    Duration::from_secs(event.maximum_batching_window_seconds.unwrap_or(0).into());
                assert!(
                    queue.visibility_timeout >= timeout * 6 + batching,
                    "{id} with {parameter}={value}: {} visibility timeout {:?} < 6 x {timeout:?}",
                    event.queue,
                    queue.visibility_timeout
                );
                assert!(queue.visibility_timeout <= Duration::from_secs(43_200));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 + 7, "every allowed timeout of both consumers");
}

#[test]
fn both_consumers_give_up_on_the_delivery_sqs_dead_letters() {
    let template = template();
    for count in ["5", "2", "13"] {
        let stack = stack(&template, &[("MaxReceiveCount", count)]);
        for (name, queue, var) in [
            (RESPONDER_FUNCTION, REPLY_QUEUE, "REPLY_MAX_RECEIVE_COUNT"),
            (
                TRANSCRIBER_FUNCTION,
                INBOUND_QUEUE,
                "INBOUND_MAX_RECEIVE_COUNT",
            ),
        ] {
            let consumer = function(&stack, name);
            let redrive = stack.queue(queue).unwrap().redrive.unwrap();
            assert_eq!(
                consumer.environment.get(var),
                Some(&redrive.max_receive_count.to_string()),
                "{name} with MaxReceiveCount={count}"
            );
            assert_eq!(redrive.max_receive_count.to_string(), count);
        }
    }
}
