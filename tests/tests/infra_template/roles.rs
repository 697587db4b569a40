//! Each function's role: exactly what its code uses.

use super::*;

fn ssm(name: &str) -> String {
    format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}")
}

type Grants = BTreeSet<(String, String)>;

fn consume(queue: &str) -> Vec<(&'static str, String)> {
    [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    ]
    .into_iter()
    .map(|a| (a, format!("${{{queue}.Arn}}")))
    .collect()
}

/// What each role may do, for a variant of the parameters.
fn expected_grants(function_id: &str, extra: &[(&str, &str)]) -> Grants {
    let set = |name: &str| extra.iter().any(|(n, v)| *n == name && !v.is_empty());
    let layer = set("WhisperModelLayerArn");
    let api_key = set("Gpt4AllApiKeyParameterName");
    let mut g: Vec<(String, String)> = Vec::new();
    let mut add = |a: &str, r: String| g.push((a.to_owned(), r));
    let log_group = format!(
        "${{{}LogGroup.Arn}}",
        function_id.trim_end_matches("Function")
    );
    add("logs:CreateLogStream", log_group.clone());
    add("logs:PutLogEvents", log_group);
    if let Some((_, key)) = extra.iter().find(|(n, _)| *n == "SecretsKmsKeyArn") {
        add("kms:Decrypt", (*key).to_owned());
    }
    match function_id {
        WEBHOOK_FUNCTION => {
            add("ssm:GetParameters", ssm("/remedios/whatsapp-verify-token"));
            add("ssm:GetParameters", ssm("/remedios/whatsapp-app-secret"));
            add("ssm:GetParameters", ssm("/remedios/user-tag-key"));
            add("sqs:SendMessage", "${InboundQueue.Arn}".into());
            add("s3:PutObject", "${Bucket.Arn}/quarantine/*".into());
        }
        TRANSCRIBER_FUNCTION => {
            add("ssm:GetParameters", ssm("/remedios/whatsapp-access-token"));
            for (a, r) in consume(INBOUND_QUEUE) {
                add(a, r);
            }
            add("sqs:SendMessage", "${ReplyQueue.Arn}".into());
            // Voice notes go back to the inbound queue, in their speech lane.
            add("sqs:SendMessage", "${InboundQueue.Arn}".into());
            for prefix in ["messages", "media", "transcripts", "usage", "lanes"] {
                add("s3:GetObject", format!("${{Bucket.Arn}}/{prefix}/*"));
                add("s3:PutObject", format!("${{Bucket.Arn}}/{prefix}/*"));
            }
            add("s3:ListBucket", "${Bucket.Arn}".into());
            // A usage record that does not parse is moved aside (Store::get_state).
            add(
                "s3:PutObject",
                "${Bucket.Arn}/quarantine/state/usage/*".into(),
            );
            add("s3:DeleteObject", "${Bucket.Arn}/usage/*".into());
            if !layer {
                add(
                    "s3:GetObject",
                    "${Bucket.Arn}/models/ggml-base-q8_0.bin".into(),
                );
            }
        }
        RESPONDER_FUNCTION => {
            add("ssm:GetParameters", ssm("/remedios/whatsapp-access-token"));
            if api_key {
                add("ssm:GetParameters", ssm("/remedios/gpt4all-api-key"));
            }
            for (a, r) in consume(REPLY_QUEUE) {
                add(a, r);
            }
            // The timers of users waiting for a person (responder::waiting).
            add("sqs:SendMessage", "${ReplyQueue.Arn}".into());
            for prefix in ["conversations", "replies"] {
                add("s3:GetObject", format!("${{Bucket.Arn}}/{prefix}/*"));
                add("s3:PutObject", format!("${{Bucket.Arn}}/{prefix}/*"));
            }
            add("s3:GetObject", "${Bucket.Arn}/knowledge/*".into());
            // Voices kept in the bucket (responder::voice::settings::VOICES_PREFIX).
            add("s3:GetObject", "${Bucket.Arn}/voices/*".into());
            add("s3:GetObject", "${Bucket.Arn}/knowledge-index/*".into());
            add("s3:PutObject", "${Bucket.Arn}/knowledge-index/*".into());
            // `/reset` (History::clear); the enforced tests call it as this role.
            add("s3:DeleteObject", "${Bucket.Arn}/conversations/*".into());
            // A conversation or reply record that does not parse is moved aside
            // (Store::get_state).
            for prefix in ["conversations", "replies"] {
                add(
                    "s3:PutObject",
                    format!("${{Bucket.Arn}}/quarantine/state/{prefix}/*"),
                );
            }
            add("s3:DeleteObject", "${Bucket.Arn}/replies/*".into());
            add("s3:ListBucket", "${Bucket.Arn}".into());
        }
        other => panic!("no expectations for {other}"),
    }
    g.into_iter().collect()
}

#[test]
fn each_role_grants_exactly_what_its_function_uses() {
    let template = template();
    for extra in VARIANTS {
        let stack = stack(&template, extra);
        let mut roles = BTreeSet::new();
        for id in FUNCTIONS {
            let f = function(&stack, id);
            assert!(
                !f.has_sam_policies,
                "{id}: SAM Policies generate broader roles"
            );
            let role_id = f.role.clone().unwrap_or_else(|| panic!("{id} has no Role"));
            assert!(
                roles.insert(role_id.clone()),
                "{role_id} is shared between functions"
            );
            let role = stack.role(&role_id).unwrap();
            assert_eq!(role.trusted_services, ["lambda.amazonaws.com"], "{role_id}");
            assert!(
                role.managed_policy_arns.is_empty(),
                "{role_id}: managed policies"
            );
            let mut actual = Grants::new();
            for statement in &role.statements {
                assert!(statement.allow, "{role_id}: only Allow statements expected");
                for action in &statement.actions {
                    assert!(!action.contains('*'), "{role_id}: wildcard action {action}");
                    for resource in &statement.resources {
                        assert!(
                            !resource.contains('*') || resource.ends_with("/*"),
                            "{role_id}: wildcard resource {resource} (only object prefixes may end in /*)"
                        );
                        assert!(
                            !resource.ends_with("/*") || resource.starts_with("${Bucket.Arn}/"),
                            "{role_id}: {resource}"
                        );
                        actual.insert((action.clone(), resource.clone()));
                    }
                }
                if statement.actions.iter().any(|a| a == "kms:Decrypt") {
                    let via = statement
                        .condition
                        .as_ref()
                        .and_then(|c| c.get("StringEquals"))
                        .and_then(|c| c.get("kms:ViaService"))
                        .and_then(|v| v.as_str());
                    assert_eq!(
                        via,
                        Some("ssm.us-east-1.amazonaws.com"),
                        "{role_id}: kms:Decrypt only through SSM"
                    );
                }
            }
            let expected = expected_grants(id, extra);
            assert_eq!(
                actual,
                expected,
                "{role_id} with {extra:?}\n  extra grants: {:?}\n  missing grants: {:?}",
                actual.difference(&expected).collect::<Vec<_>>(),
                expected.difference(&actual).collect::<Vec<_>>()
            );
        }
    }
}
