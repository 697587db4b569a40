//! The local stack's resources, read from the template and created on moto.

use super::*;

fn definition(name: &str, visibility: u64, dlq_name: &str) -> QueueDefinition {
    QueueDefinition {
        spec: QueueSpec {
            name: name.into(),
            visibility_timeout: Duration::from_secs(visibility),
            max_receive_count: 5,
        },
        fifo: true,
        content_based_deduplication: false,
        message_retention: Duration::from_secs(345_600),
        dead_letter_name: dlq_name.into(),
        dead_letter_retention: Duration::from_secs(1_209_600),
    }
}

#[test]
fn local_resources_are_the_templates_with_default_parameters() {
    let local = infra::local_resources("remedios-local").unwrap();
    assert_eq!(
        local.inbound,
        definition("remedios-local-inbound", 1800, "remedios-local-inbound-dlq")
    );
    assert_eq!(
        local.reply,
        definition("remedios-local-reply", 720, "remedios-local-reply-dlq")
    );
    assert_eq!(local.inbound.queue_name(), "remedios-local-inbound.fifo");
    assert_eq!(
        local.reply.dead_letter_queue_name(),
        "remedios-local-reply-dlq.fifo"
    );
    assert_eq!(local.transcriber.function, TRANSCRIBER_FUNCTION);
    assert_eq!(local.transcriber.batch_size, 1);
    assert_eq!(local.transcriber.timeout, Duration::from_secs(300));
    assert_eq!(local.transcriber.maximum_concurrency, Some(5));
    assert_eq!(local.responder.function, RESPONDER_FUNCTION);
    assert_eq!(local.responder.timeout, Duration::from_secs(120));
    assert!(
        local.transcriber.report_batch_item_failures && local.responder.report_batch_item_failures
    );
    let rules: BTreeMap<Option<String>, Option<u32>> = local
        .bucket
        .lifecycle
        .iter()
        .map(|r| (r.prefix.clone(), r.expiration_days))
        .collect();
    let expected: BTreeMap<Option<String>, Option<u32>> = [
        (Some("messages/"), Some(30)),
        (Some("media/"), Some(30)),
        (Some("transcripts/"), Some(30)),
        (Some("replies/"), Some(30)),
        (Some("quarantine/"), Some(30)),
        (Some("conversations/"), Some(90)),
        (Some("usage/"), Some(2)),
        (Some("lanes/"), Some(5)),
        (None, None),
    ]
    .into_iter()
    .map(|(p, d)| (p.map(str::to_owned), d))
    .collect();
    assert_eq!(rules, expected);
}

#[tokio::test]
async fn the_local_stack_creates_the_templates_queues_and_bucket_on_moto() {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let local = infra::local_resources("remedios-infra-test").unwrap();
    let moto = Moto::start()
        .await
        .expect("moto starts (scripts/bootstrap.sh installs it)");
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = moto::s3_client(&config);
    for definition in [&local.inbound, &local.reply] {
        let pair = moto::create_queues(&sqs, definition).await.unwrap();
        assert!(pair.url.ends_with(&definition.queue_name()), "{}", pair.url);
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&pair.url)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap();
        let attributes = attributes.attributes().unwrap();
        assert_eq!(attributes[&A::FifoQueue], "true");
        assert_eq!(
            attributes[&A::VisibilityTimeout],
            definition.spec.visibility_timeout.as_secs().to_string()
        );
        assert_eq!(attributes[&A::MessageRetentionPeriod], "345600");
        let redrive: serde_json::Value =
            serde_json::from_str(&attributes[&A::RedrivePolicy]).unwrap();
        assert_eq!(redrive["deadLetterTargetArn"], pair.dlq_arn.as_str());
        assert_eq!(redrive["maxReceiveCount"].to_string(), "5");
        let dlq = sqs
            .get_queue_attributes()
            .queue_url(&pair.dlq_url)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap();
        let dlq = dlq.attributes().unwrap();
        assert_eq!(dlq[&A::MessageRetentionPeriod], "1209600");
        assert_eq!(dlq[&A::FifoQueue], "true");
    }

    moto::create_configured_bucket(&s3, "remedios-infra-test", &local.bucket)
        .await
        .unwrap();
    let encryption = s3
        .get_bucket_encryption()
        .bucket("remedios-infra-test")
        .send()
        .await
        .unwrap();
    let algorithm = encryption
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_owned());
    assert_eq!(algorithm.as_deref(), Some("AES256"));
    let block = s3
        .get_public_access_block()
        .bucket("remedios-infra-test")
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(block.block_public_acls(), Some(true));
    assert_eq!(block.restrict_public_buckets(), Some(true));
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket("remedios-infra-test")
        .send()
        .await
        .unwrap();
    let media = lifecycle
        .rules()
        .iter()
        .find(|r| r.id() == Some("expire-media"))
        .expect("the media expiry rule");
    assert_eq!(media.expiration().and_then(|e| e.days()), Some(30));
    assert_eq!(lifecycle.rules().len(), local.bucket.lifecycle.len());
}
