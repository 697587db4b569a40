//! Each function runs with its own role's permissions (`remedios_testkit::iam`): moto
//! enforces IAM, and a function's principal holds exactly its role's statements from
//! `infra/template.yaml`. Shown here on the responder's role: a scratch copy of it
//! without one statement is refused the call that statement allowed, with AccessDenied,
//! as AWS would refuse it.

use std::collections::BTreeMap;

use remedios_shared::keys;
use remedios_shared::store::Store;
use remedios_shared::user::UserTag;
use remedios_template::RESPONDER_FUNCTION;
use remedios_testkit::iam::{self, Principal};
use remedios_testkit::meta;
use remedios_testkit::moto::{self, Moto};
use responder::history::{Bounds, History};

const BUCKET: &str = "remedios-iam-test";

fn arns() -> BTreeMap<String, String> {
    [
        (
            "ReplyQueue.Arn".to_owned(),
            iam::queue_arn("remedios-reply.fifo"),
        ),
        ("Bucket.Arn".to_owned(), iam::bucket_arn(BUCKET)),
    ]
    .into()
}

fn user() -> UserTag {
    remedios_testkit::meta::user_tag("15550009999")
}

async fn history_as(moto: &Moto, principal: &str) -> History {
    let sdk = moto
        .sdk_config_as(principal)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    History::new(
        Store::new(moto::s3_client(&sdk), BUCKET),
        Bounds {
            max_turns: 10,
            max_chars: 10_000,
        },
    )
}

#[tokio::test]
async fn a_statement_removed_from_a_role_is_refused_with_access_denied() {
    let role = remedios_template::local_role(RESPONDER_FUNCTION, &[]).unwrap();
    let forget = "ForgetConversation";
    assert!(
        role.statements
            .iter()
            .any(|s| s.sid.as_deref() == Some(forget)),
        "the responder's role lets /reset delete a conversation"
    );
    let mut scratch = role.clone();
    scratch
        .statements
        .retain(|s| s.sid.as_deref() != Some(forget));
    let moto = Moto::start_enforcing(vec![
        Principal::from_role("responder", &role, &arns()).unwrap(),
        Principal::from_role("responder-scratch", &scratch, &arns()).unwrap(),
    ])
    .await
    .unwrap_or_else(|e| panic!("cannot start moto: {e} (run scripts/bootstrap.sh)"));
    let admin = moto::s3_client(&moto.sdk_config().await);
    moto::create_bucket(&admin, BUCKET).await.unwrap();
    let user = user();

    // The role as the template has it: the conversation is written, then forgotten.
    let history = history_as(&moto, "responder").await;
    history
        .append_to(None, &user, "wamid.1", "question", "answer", 1)
        .await
        .unwrap();
    history
        .clear(&user)
        .await
        .expect("/reset deletes the conversation");
    let gone = Store::new(admin.clone(), BUCKET)
        .get(&keys::conversation(&user))
        .await
        .unwrap();
    assert!(gone.is_none(), "the conversation is forgotten");

    // The scratch role writes it too, but cannot forget it.
    let scratch = history_as(&moto, "responder-scratch").await;
    scratch
        .append_to(None, &user, "wamid.2", "question", "answer", 2)
        .await
        .unwrap();
    let refused = scratch.clear(&user).await.unwrap_err().to_string();
    assert!(refused.contains("AccessDenied"), "{refused}");
}

#[tokio::test]
async fn a_role_reaches_only_its_own_prefixes_and_unknown_keys_nothing() {
    let moto = Moto::start_enforcing(vec![
        iam::function_principal(
            RESPONDER_FUNCTION,
            &arns()
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    ])
    .await
    .unwrap_or_else(|e| panic!("cannot start moto: {e} (run scripts/bootstrap.sh)"));
    let admin = moto::s3_client(&moto.sdk_config().await);
    moto::create_bucket(&admin, BUCKET).await.unwrap();
    let responder = Store::new(
        moto::s3_client(&moto.sdk_config_as("responder").await.unwrap()),
        BUCKET,
    );
    let user = user();
    responder
        .put(
            &keys::conversation(&user),
            b"{}".to_vec(),
            "application/json",
        )
        .await
        .expect("conversations/ is the responder's");
    let media = responder
        .put(
            &keys::media(&user, &meta::message_tag("wamid.3"), "ogg"),
            b"x".to_vec(),
            "audio/ogg",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(media.contains("AccessDenied"), "{media}");

    // Credentials moto does not know are refused outright.
    let stranger = Store::new(
        moto::s3_client(&moto::sdk_config_for(moto.endpoint()).await),
        BUCKET,
    );
    assert!(
        stranger.get(&keys::conversation(&user)).await.is_err(),
        "unknown credentials read nothing"
    );
}
