//! IAM on the emulator, as AWS enforces it: one IAM user per function whose inline policy
//! is that function's role in `infra/template.yaml`, so a call the role does not allow
//! fails in the tests with `AccessDenied`, as it would in a deployed stack.
//!
//! moto enforces IAM after its first `INITIAL_NO_AUTH_ACTION_COUNT` requests. [`Moto`]
//! spends exactly that many creating an admin user (for setup: queues, bucket, secrets)
//! and the function users, each with its policy and an access key; from then on every
//! request must be signed by one of those keys and be allowed by its policy.
//!
//! Where moto checks differently from AWS, the policy is adapted, and only so:
//! - AWS authorises `SendMessageBatch`, `DeleteMessageBatch` and
//!   `ChangeMessageVisibilityBatch` by their single action (`sqs:SendMessage`, ...);
//!   moto asks for the batch action itself, so a statement granting the single action
//!   grants the batch one too.
//! - moto names the resource of a request for S3, SQS, IAM and STS only; any other
//!   service's request is checked against `*`, so statements of other services (SSM,
//!   KMS, CloudWatch Logs) are given `Resource: *`. Their ARNs are checked by the
//!   template test instead, and so are conditions moto does not evaluate (`s3:prefix`).
//!
//! [`Moto`]: crate::moto::Moto

use std::collections::BTreeMap;

use remedios_template::{Role, Statement};
use serde_json::{Value, json};

/// The account moto runs as; template ARNs are made in it.
pub const ACCOUNT_ID: &str = "123456789012";
/// The region the local stack and the tests use.
pub const REGION: &str = "us-east-1";
/// The IAM user the setup (queues, bucket, secrets) runs as.
pub const ADMIN: &str = "remedios-admin";

/// A function's identity on the emulator: an IAM user and its policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub name: String,
    pub policy: Value,
}

/// An access key of a [`Principal`].
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKey({}, ***)", self.id)
    }
}

/// Why a role could not become a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role {role}: {problem}")]
pub struct PolicyError {
    pub role: String,
    pub problem: String,
}

/// The ARN moto gives the queue `name` (with `.fifo` for a FIFO queue).
pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
}

/// The ARN of the bucket `name`.
pub fn bucket_arn(name: &str) -> String {
    format!("arn:aws:s3:::{name}")
}

impl Principal {
    /// A user allowed everything: the setup's.
    pub fn admin() -> Self {
        Principal {
            name: ADMIN.to_owned(),
            policy: json!({
                "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }],
            }),
        }
    }

    /// The user `name` with exactly `role`'s statements, its symbolic resources
    /// (`${Bucket.Arn}/media/*`, `${InboundQueue.Arn}`) made concrete from `arns`
    /// (`"Bucket.Arn"` → `arn:aws:s3:::remedios-test`), adapted to moto as the module
    /// documentation says.
    pub fn from_role(
        name: &str,
        role: &Role,
        arns: &BTreeMap<String, String>,
    ) -> Result<Self, PolicyError> {
        let fail = |problem: String| PolicyError {
            role: role.logical_id.clone(),
            problem,
        };
        if !role.managed_policy_arns.is_empty() {
            return Err(fail(format!(
                "managed policies {:?} cannot be reproduced on the emulator",
                role.managed_policy_arns
            )));
        }
        let statements = role
            .statements
            .iter()
            .map(|s| statement(s, arns).map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Principal {
            name: name.to_owned(),
            policy: json!({ "Version": "2012-10-17", "Statement": statements }),
        })
    }
}

/// The principal of the template's function `function` (a logical id such as
/// `ResponderFunction`): named after it (`responder`), with its role's statements over
/// the resources the caller made, `arns` as [`Principal::from_role`] takes them.
pub fn function_principal(
    function: &str,
    arns: &[(&str, String)],
) -> Result<Principal, PolicyError> {
    function_principal_with(function, &[], arns)
}

/// [`function_principal`] in a stack with template `parameters` set (a role's
/// conditional statements follow them).
pub fn function_principal_with(
    function: &str,
    parameters: &[(&str, &str)],
    arns: &[(&str, String)],
) -> Result<Principal, PolicyError> {
    let role = remedios_template::local_role(function, parameters).map_err(|e| PolicyError {
        role: function.to_owned(),
        problem: e.to_string(),
    })?;
    let arns = arns
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Principal::from_role(&principal_name(function), &role, &arns)
}

/// `ResponderFunction` → `responder`.
pub fn principal_name(function: &str) -> String {
    function.trim_end_matches("Function").to_lowercase()
}

/// One statement for moto.
fn statement(s: &Statement, arns: &BTreeMap<String, String>) -> Result<Value, String> {
    let mut actions = s.actions.clone();
    for (single, batch) in [
        ("sqs:SendMessage", "sqs:SendMessageBatch"),
        ("sqs:DeleteMessage", "sqs:DeleteMessageBatch"),
        (
            "sqs:ChangeMessageVisibility",
            "sqs:ChangeMessageVisibilityBatch",
        ),
    ] {
        if actions.iter().any(|a| a == single) && !actions.iter().any(|a| a == batch) {
            actions.push(batch.to_owned());
        }
    }
    let resource_named_by_moto = actions.iter().all(|a| {
        let service = a.split(':').next().unwrap_or_default();
        matches!(service, "s3" | "sqs" | "iam" | "sts")
    });
    let resources: Vec<String> = if resource_named_by_moto {
        s.resources
            .iter()
            .map(|r| concrete(r, arns))
            .collect::<Result<_, _>>()?
    } else {
        vec!["*".to_owned()]
    };
    let mut out = json!({
        "Effect": if s.allow { "Allow" } else { "Deny" },
        "Action": actions,
        "Resource": resources,
    });
    if let Some(sid) = &s.sid {
        out["Sid"] = json!(sid);
    }
    Ok(out)
}

/// `${Bucket.Arn}/media/*` → `arn:aws:s3:::remedios-test/media/*`.
fn concrete(resource: &str, arns: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = resource;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated reference in {resource}"))?;
        let symbol = &after[..end];
        let value = arns.get(symbol).ok_or_else(|| {
            format!("{resource} names {symbol}, which the emulator setup did not create")
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The unsigned IAM Query requests that create `principal` (3 requests), in order.
pub(crate) fn creation_requests(principal: &Principal) -> [Vec<(&'static str, String)>; 3] {
    let user = principal.name.clone();
    [
        vec![("Action", "CreateUser".into()), ("UserName", user.clone())],
        vec![
            ("Action", "PutUserPolicy".into()),
            ("UserName", user.clone()),
            ("PolicyName", "role".into()),
            ("PolicyDocument", principal.policy.to_string()),
        ],
        vec![("Action", "CreateAccessKey".into()), ("UserName", user)],
    ]
}

/// The access key in a `CreateAccessKey` answer (XML).
pub(crate) fn access_key_of(xml: &str) -> Option<AccessKey> {
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{tag}>"))? + start;
        Some(xml[start..end].trim().to_owned())
    };
    Some(AccessKey {
        id: field("AccessKeyId")?,
        secret: field("SecretAccessKey")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(statements: Vec<Statement>) -> Role {
        Role {
            logical_id: "TestRole".into(),
            trusted_services: vec!["lambda.amazonaws.com".into()],
            statements,
            managed_policy_arns: Vec::new(),
        }
    }

    fn allow(actions: &[&str], resources: &[&str]) -> Statement {
        Statement {
            sid: None,
            allow: true,
            actions: actions.iter().map(|a| a.to_string()).collect(),
            resources: resources.iter().map(|r| r.to_string()).collect(),
            condition: None,
        }
    }

    #[test]
    fn symbolic_arns_are_made_concrete_and_batches_follow_their_action() {
        let arns: BTreeMap<String, String> = [
            ("Bucket.Arn".to_owned(), bucket_arn("b")),
            ("InboundQueue.Arn".to_owned(), queue_arn("q.fifo")),
        ]
        .into();
        let principal = Principal::from_role(
            "fn",
            &role(vec![
                allow(&["s3:GetObject"], &["${Bucket.Arn}/media/*"]),
                allow(&["sqs:SendMessage"], &["${InboundQueue.Arn}"]),
                allow(
                    &["ssm:GetParameters"],
                    &["arn:aws:ssm:us-east-1:1:parameter/x"],
                ),
            ]),
            &arns,
        )
        .unwrap();
        let s = &principal.policy["Statement"];
        assert_eq!(s[0]["Resource"], json!(["arn:aws:s3:::b/media/*"]));
        assert_eq!(
            s[1]["Action"],
            json!(["sqs:SendMessage", "sqs:SendMessageBatch"])
        );
        assert_eq!(
            s[1]["Resource"],
            json!(["arn:aws:sqs:us-east-1:123456789012:q.fifo"])
        );
        assert_eq!(s[2]["Resource"], json!(["*"]));
    }

    #[test]
    fn a_resource_the_setup_did_not_create_is_named() {
        let err = Principal::from_role(
            "fn",
            &role(vec![allow(&["sqs:SendMessage"], &["${ReplyQueue.Arn}"])]),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.problem.contains("ReplyQueue.Arn"), "{err}");
    }

    #[test]
    fn access_keys_are_read_from_the_answer() {
        let xml = "<CreateAccessKeyResponse><CreateAccessKeyResult><AccessKey><UserName>u</UserName>\
            <AccessKeyId>AKIA1</AccessKeyId><Status>Active</Status>\
            <SecretAccessKey>s3cr3t</SecretAccessKey></AccessKey></CreateAccessKeyResult></CreateAccessKeyResponse>";
        assert_eq!(
            access_key_of(xml),
            Some(AccessKey {
                id: "AKIA1".into(),
                secret: "s3cr3t".into()
            })
        );
        assert_eq!(access_key_of("<nothing/>"), None);
    }
}
