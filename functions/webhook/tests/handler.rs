//! The webhook's handler end to end: HTTP API / function URL requests through
//! `Webhook::handle`, the real AWS SDK against moto started by each test, and
//! assertions on what landed in SQS and S3.

mod common;

use common::*;
use remedios_shared::clock::now_ms;
use remedios_shared::envelope::{Content, MediaRef, ReplyContext};
use remedios_shared::keys;
use remedios_shared::queue;
use remedios_shared::whatsapp::webhook::{ApiError, ErrorData, Referral};
use remedios_testkit::meta::{self, User};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TS: i64 = 1_767_225_600;

// ---------------------------------------------------------------- handshake

#[tokio::test]
async fn the_handshake_answers_the_challenge_for_the_configured_token() {
    let stack = TestBed::start().await;
    let query = format!(
        "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={}",
        url::form_urlencoded::byte_serialize(VERIFY_TOKEN.as_bytes()).collect::<String>()
    );
    let response = stack.handle(get(&query)).await;
    assert_eq!(status(&response), 200);
    assert_eq!(text(&response), "1158201444");
    assert!(
        response.headers()[lambda_http::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn the_handshake_works_through_a_rest_api_event_too() {
    let stack = TestBed::start().await;
    let event = json!({
        "resource": "/webhook",
        "path": "/webhook",
        "httpMethod": "GET",
        "headers": { "Host": "abc.execute-api.eu-west-1.amazonaws.com" },
        "multiValueHeaders": { "Host": ["abc.execute-api.eu-west-1.amazonaws.com"] },
        "queryStringParameters": {
            "hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": VERIFY_TOKEN
        },
        "multiValueQueryStringParameters": {
            "hub.mode": ["subscribe"], "hub.challenge": ["42"], "hub.verify_token": [VERIFY_TOKEN]
        },
        "requestContext": {
            "accountId": "123456789012", "resourceId": "r1", "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "identity": {},
            "resourcePath": "/webhook", "httpMethod": "GET", "apiId": "abc"
        },
        "body": null,
        "isBase64Encoded": false
    });
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = stack.handle(request).await;
    assert_eq!(status(&response), 200);
    assert_eq!(text(&response), "42");
}

#[tokio::test]
async fn the_handshake_is_refused_for_a_wrong_token_mode_or_missing_parts() {
    let stack = TestBed::start().await;
    let token = url::form_urlencoded::byte_serialize(VERIFY_TOKEN.as_bytes()).collect::<String>();
    let refused = [
        // wrong token
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess".to_owned(),
        // the right token with one character more or less
        format!("hub.mode=subscribe&hub.challenge=1&hub.verify_token={token}x"),
        format!(
            "hub.mode=subscribe&hub.challenge=1&hub.verify_token={}",
            &token[..token.len() - 1]
        ),
        // wrong mode
        format!("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={token}"),
        // missing mode, token, challenge; an empty challenge
        format!("hub.challenge=1&hub.verify_token={token}"),
        "hub.mode=subscribe&hub.challenge=1".to_owned(),
        format!("hub.mode=subscribe&hub.verify_token={token}"),
        format!("hub.mode=subscribe&hub.challenge=&hub.verify_token={token}"),
        String::new(),
    ];
    for query in refused {
        let response = stack.handle(get(&query)).await;
        assert_eq!(status(&response), 403, "{query}");
        assert!(
            !text(&response).contains('1'),
            "{query}: no challenge echoed"
        );
    }
}

#[tokio::test]
async fn other_methods_are_refused() {
    let stack = TestBed::start().await;
    let response = stack
        .handle(event("PUT", "", &[], Some(b"{}"), false))
        .await;
    assert_eq!(status(&response), 405);
    stack.assert_nothing_taken_in().await;
}

// ---------------------------------------------------------------- signatures

fn one_text() -> String {
    let user = phone_user(1);
    meta::single(&user, meta::text(&user, &wamid("SIG"), TS, "hello"))
}

#[tokio::test]
async fn missing_malformed_and_wrong_signatures_answer_401_and_take_nothing_in() {
    let stack = TestBed::start().await;
    let body = one_text();
    let good = sign(body.as_bytes());
    let wrong_secret = meta::sign(b"not-the-app-secret", body.as_bytes());
    let mut changed = body.clone().into_bytes();
    let at = changed.iter().position(|&b| b == b'h').unwrap();
    changed[at] = b'j'; // "hello" -> "jello": one byte of the body changed
    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("missing header", body.clone().into_bytes(), None),
        (
            "empty header",
            body.clone().into_bytes(),
            Some(String::new()),
        ),
        (
            "no sha256= prefix",
            body.clone().into_bytes(),
            Some(good.trim_start_matches("sha256=").to_owned()),
        ),
        (
            "sha1 instead of sha256",
            body.clone().into_bytes(),
            Some(good.replace("sha256=", "sha1=")),
        ),
        (
            "truncated digest",
            body.clone().into_bytes(),
            Some(good[..good.len() - 2].to_owned()),
        ),
        (
            "not hex",
            body.clone().into_bytes(),
            Some(format!("sha256={}", "zz".repeat(32))),
        ),
        (
            "wrong secret",
            body.clone().into_bytes(),
            Some(wrong_secret),
        ),
        ("one byte of the body changed", changed, Some(good.clone())),
    ];
    for (what, bytes, header) in cases {
        let response = stack.handle(post(&bytes, header.as_deref())).await;
        assert_eq!(status(&response), 401, "{what}");
        assert_eq!(text(&response), "invalid signature", "{what}");
    }
    stack.assert_nothing_taken_in().await;
}

/// Meta sends lower-case hex. The digest is decoded before the constant-time MAC
/// comparison, so upper-case hex of the same digest is the same signature and is
/// accepted; what is compared is the MAC, never the spelling.
#[tokio::test]
async fn an_upper_case_hex_signature_of_the_right_digest_is_accepted() {
    let stack = TestBed::start().await;
    let body = one_text();
    let upper = sign(body.as_bytes())
        .to_uppercase()
        .replace("SHA256=", "sha256=");
    let response = stack.handle(post(body.as_bytes(), Some(&upper))).await;
    assert_eq!(status(&response), 200);
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn a_base64_encoded_body_is_verified_over_its_decoded_bytes() {
    let stack = TestBed::start().await;
    let body = one_text();
    let signature = sign(body.as_bytes());
    let request = event(
        "POST",
        "",
        &[(remedios_shared::signature::HEADER, &signature)],
        Some(body.as_bytes()),
        true,
    );
    let response = stack.handle(request).await;
    assert_eq!(status(&response), 200);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope.id, wamid("SIG"));
}

// ---------------------------------------------------------------- message types

/// Every documented inbound type, as Meta's webhook reference shapes it, with the
/// envelope content the next stages should see.
fn every_type(user: &User) -> Vec<(Value, Content)> {
    let m =
        |id: &str, kind: &str, payload: Value| meta::message(user, &wamid(id), TS, kind, payload);
    let media = |id: &str, mime: &str, sha: &str| MediaRef {
        id: id.into(),
        mime_type: Some(mime.into()),
        sha256: Some(sha.into()),
    };
    let mut unsupported = m("UNSUP", "unsupported", json!({ "type": "edit" }));
    unsupported["errors"] = json!([{
        "code": 131051,
        "title": "Message type unknown",
        "message": "Message type unknown",
        "error_data": { "details": "Message type is currently not supported." }
    }]);
    let mut unknown = m("UNKNOWN", "unknown", Value::Null);
    unknown["errors"] = json!([{ "code": 131051, "title": "Message type unknown" }]);
    vec![
        (
            meta::text(user, &wamid("TEXT"), TS, "Is it going to rain?"),
            Content::Text {
                body: "Is it going to rain?".into(),
            },
        ),
        (
            meta::audio(
                user,
                &wamid("VOICE"),
                TS,
                "1003",
                "audio/ogg; codecs=opus",
                true,
            ),
            Content::Audio {
                media: MediaRef {
                    id: "1003".into(),
                    mime_type: Some("audio/ogg; codecs=opus".into()),
                    sha256: None,
                },
                voice: true,
            },
        ),
        (
            m(
                "AUDIO",
                "audio",
                json!({ "id": "1004", "mime_type": "audio/mpeg", "sha256": "c2hhLWF1ZGlv", "voice": false }),
            ),
            Content::Audio {
                media: media("1004", "audio/mpeg", "c2hhLWF1ZGlv"),
                voice: false,
            },
        ),
        (
            m(
                "IMAGE",
                "image",
                json!({ "caption": "my garden", "mime_type": "image/jpeg", "sha256": "aW1n", "id": "1005" }),
            ),
            Content::Image {
                media: media("1005", "image/jpeg", "aW1n"),
                caption: Some("my garden".into()),
            },
        ),
        (
            m(
                "VIDEO",
                "video",
                json!({ "mime_type": "video/mp4", "sha256": "dmlk", "id": "1006" }),
            ),
            Content::Video {
                media: media("1006", "video/mp4", "dmlk"),
                caption: None,
            },
        ),
        (
            m(
                "DOC",
                "document",
                json!({ "caption": "the lab results", "filename": "results.pdf", "mime_type": "application/pdf", "sha256": "ZG9j", "id": "1007" }),
            ),
            Content::Document {
                media: media("1007", "application/pdf", "ZG9j"),
                caption: Some("the lab results".into()),
                filename: Some("results.pdf".into()),
            },
        ),
        (
            m(
                "STICKER",
                "sticker",
                json!({ "mime_type": "image/webp", "sha256": "c3Rr", "id": "1008", "animated": true }),
            ),
            Content::Sticker {
                media: media("1008", "image/webp", "c3Rr"),
                animated: true,
            },
        ),
        (
            m(
                "LOC",
                "location",
                json!({ "latitude": 38.7223, "longitude": -9.1393, "name": "Praça do Comércio", "address": "Lisboa", "url": "https://example.org" }),
            ),
            Content::Location {
                latitude: 38.7223,
                longitude: -9.1393,
                name: Some("Praça do Comércio".into()),
                address: Some("Lisboa".into()),
            },
        ),
        (
            m(
                "CONTACTS",
                "contacts",
                json!([
                    { "name": { "formatted_name": "Ana Lima", "first_name": "Ana" },
                      "phones": [{ "phone": "+1 555 0100", "wa_id": "15550100", "type": "CELL" }] },
                    { "name": { "first_name": "Rui" } }
                ]),
            ),
            Content::Contacts {
                names: vec!["Ana Lima".into(), "Rui".into()],
            },
        ),
        (
            m(
                "BTNREPLY",
                "interactive",
                json!({ "type": "button_reply", "button_reply": { "id": "yes-1", "title": "Yes" } }),
            ),
            Content::Interactive {
                reply_id: Some("yes-1".into()),
                title: "Yes".into(),
            },
        ),
        (
            m(
                "LISTREPLY",
                "interactive",
                json!({ "type": "list_reply", "list_reply": { "id": "row-2", "title": "Tuesday", "description": "afternoon" } }),
            ),
            Content::Interactive {
                reply_id: Some("row-2".into()),
                title: "Tuesday".into(),
            },
        ),
        (
            m(
                "FLOW",
                "interactive",
                json!({ "type": "nfm_reply", "nfm_reply": { "name": "flow", "body": "Sent", "response_json": "{\"flow_token\":\"t\"}" } }),
            ),
            Content::Interactive {
                reply_id: Some("flow".into()),
                title: "Sent".into(),
            },
        ),
        (
            m(
                "BUTTON",
                "button",
                json!({ "payload": "STOP_PROMOS", "text": "Stop promotions" }),
            ),
            Content::Button {
                payload: Some("STOP_PROMOS".into()),
                text: "Stop promotions".into(),
            },
        ),
        (
            m(
                "REACT",
                "reaction",
                json!({ "message_id": "wamid.OURS", "emoji": "\u{1F44D}" }),
            ),
            Content::Reaction {
                message_id: "wamid.OURS".into(),
                emoji: Some("\u{1F44D}".into()),
            },
        ),
        (
            m("UNREACT", "reaction", json!({ "message_id": "wamid.OURS" })),
            Content::Reaction {
                message_id: "wamid.OURS".into(),
                emoji: None,
            },
        ),
        (
            m(
                "ORDER",
                "order",
                json!({ "catalog_id": "194836987003835", "text": "Love these!", "product_items": [
                    { "product_retailer_id": "di9ozbzfi4", "quantity": 2, "item_price": 7.99, "currency": "USD" },
                    { "product_retailer_id": "x1", "quantity": 1, "item_price": 3, "currency": "USD" }
                ] }),
            ),
            Content::Order {
                catalog_id: "194836987003835".into(),
                items: 2,
                text: Some("Love these!".into()),
            },
        ),
        (
            m(
                "SYSTEM",
                "system",
                json!({ "body": "User A changed from 15550000001 to 15550000002", "new_wa_id": "15550000002", "type": "user_changed_number" }),
            ),
            Content::System {
                kind: Some("user_changed_number".into()),
                body: Some("User A changed from 15550000001 to 15550000002".into()),
            },
        ),
        (
            unsupported,
            Content::Unsupported {
                original_type: "unsupported".into(),
                detail: Some("edit".into()),
                errors: vec![ApiError {
                    code: 131051,
                    title: Some("Message type unknown".into()),
                    message: Some("Message type unknown".into()),
                    error_data: Some(ErrorData {
                        details: Some("Message type is currently not supported.".into()),
                    }),
                }],
            },
        ),
        (
            unknown,
            Content::Unsupported {
                original_type: "unknown".into(),
                detail: None,
                errors: vec![ApiError {
                    code: 131051,
                    title: Some("Message type unknown".into()),
                    ..ApiError::default()
                }],
            },
        ),
    ]
}

#[tokio::test]
async fn every_documented_message_type_is_enqueued_with_its_envelope() {
    let stack = TestBed::start().await;
    let user = User {
        wa_id: Some("15551234567".into()),
        user_id: Some("US.13491208655302741918".into()),
        name: "Sheena Nelson".into(),
        username: Some("@sheena".into()),
    };
    let cases = every_type(&user);
    let started_ms = now_ms();
    // One notification per message, as Meta usually delivers them.
    for (message, _) in &cases {
        let response = stack
            .post_signed(&meta::single(&user, message.clone()))
            .await;
        assert_eq!(status(&response), 200, "{message}");
    }
    let received = stack.drain().await;
    assert_eq!(received.len(), cases.len());
    let tag = meta::user_tag("US.13491208655302741918");
    for ((message, expected), got) in cases.iter().zip(&received) {
        let id = message["id"].as_str().unwrap();
        let e = &got.envelope;
        assert_eq!(e.id, id);
        assert_eq!(e.message_tag, meta::message_tag(id));
        assert_eq!(&e.content, expected, "{id}");
        assert_eq!(e.v, remedios_shared::envelope::ENVELOPE_VERSION);
        assert_eq!(e.phone_number_id, meta::PHONE_NUMBER_ID);
        assert_eq!(
            e.display_phone_number.as_deref(),
            Some(meta::DISPLAY_NUMBER)
        );
        assert_eq!(e.timestamp, TS);
        assert!(
            (started_ms..=now_ms()).contains(&e.received_at_ms),
            "received_at_ms is our clock"
        );
        assert_eq!(e.sender.wa_id.as_deref(), Some("15551234567"));
        assert_eq!(e.sender.user_id.as_deref(), Some("US.13491208655302741918"));
        assert_eq!(e.sender.username.as_deref(), Some("@sheena"));
        assert_eq!(e.sender.profile_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(got.group_id, tag.as_str(), "per-user FIFO group");
        assert_eq!(
            got.dedup_id,
            meta::message_tag(id).as_str(),
            "dedup id is the keyed message tag, never the WhatsApp message id"
        );
        assert!(queue::sqs_accepts(&got.body));
        assert!(
            !got.group_id.contains("1234567"),
            "no phone number in SQS metadata"
        );
    }
    assert!(stack.quarantined().await.is_empty());
}

#[tokio::test]
async fn replies_referrals_and_a_type_with_no_payload_travel_too() {
    let stack = TestBed::start().await;
    let user = phone_user(7);
    let mut reply = meta::text(&user, &wamid("REPLY"), TS, "yes, that one");
    reply["context"] = json!({ "from": meta::DISPLAY_NUMBER, "id": "wamid.OURS1" });
    let mut forwarded = meta::text(&user, &wamid("FWD"), TS, "look at this");
    forwarded["context"] =
        json!({ "from": meta::DISPLAY_NUMBER, "id": "wamid.OURS2", "forwarded": true });
    let mut ad = meta::text(&user, &wamid("AD"), TS, "I saw your ad");
    ad["referral"] = json!({
        "source_url": "https://fb.me/abc", "source_id": "120200000", "source_type": "ad",
        "headline": "Ask us", "body": "Ask anything", "media_type": "image",
        "image_url": "https://example.org/i.jpg", "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ"
    });
    // A known type whose payload object is missing cannot be used: unsupported.
    let no_payload = meta::message(&user, &wamid("NOIMG"), TS, "image", Value::Null);
    let body = meta::notification(vec![meta::change(
        &[&user],
        vec![reply, forwarded, ad, no_payload],
        vec![],
    )]);
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let got: Vec<_> = stack
        .drain()
        .await
        .into_iter()
        .map(|r| r.envelope)
        .collect();
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[0].context,
        Some(ReplyContext {
            message_id: "wamid.OURS1".into(),
            forwarded: false
        })
    );
    assert_eq!(
        got[1].context,
        Some(ReplyContext {
            message_id: "wamid.OURS2".into(),
            forwarded: true
        })
    );
    assert_eq!(
        got[2].referral,
        Some(Referral {
            source_url: Some("https://fb.me/abc".into()),
            source_type: Some("ad".into()),
            source_id: Some("120200000".into()),
            headline: Some("Ask us".into()),
            body: Some("Ask anything".into()),
            media_type: Some("image".into()),
            ctwa_clid: Some("ARAkLkA8rmlFeiCktEJQ".into()),
        })
    );
    assert_eq!(
        got[3].content,
        Content::Unsupported {
            original_type: "image".into(),
            detail: None,
            errors: vec![]
        }
    );
}

#[tokio::test]
async fn an_unknown_message_type_becomes_an_unsupported_envelope() {
    let stack = TestBed::start().await;
    let user = phone_user(2);
    let mut message = meta::message(
        &user,
        &wamid("HOLO"),
        TS,
        "hologram",
        json!({ "frames": 3, "nested": { "x": [1, 2] } }),
    );
    message["a_field_from_the_future"] = json!({ "any": "shape" });
    let response = stack.post_signed(&meta::single(&user, message)).await;
    assert_eq!(status(&response), 200);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].envelope.content,
        Content::Unsupported {
            original_type: "hologram".into(),
            detail: None,
            errors: vec![]
        }
    );
    assert!(stack.quarantined().await.is_empty());
}

#[tokio::test]
async fn a_sender_known_only_by_business_scoped_id_is_enqueued_under_it() {
    let stack = TestBed::start().await;
    let user = User::username_only("US.13491208655302741918", "@ana", "Ana");
    let body = meta::single(&user, meta::text(&user, &wamid("BSUID"), TS, "hi"));
    assert!(
        !body.contains("\"from\""),
        "the fixture has no phone number"
    );
    assert!(!body.contains("wa_id"));
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    let sender = &received[0].envelope.sender;
    assert_eq!(sender.wa_id, None);
    assert_eq!(sender.user_id.as_deref(), Some("US.13491208655302741918"));
    assert_eq!(sender.username.as_deref(), Some("@ana"));
    assert_eq!(sender.profile_name.as_deref(), Some("Ana"));
    assert_eq!(
        received[0].group_id,
        meta::user_tag("US.13491208655302741918").as_str()
    );
}

// ---------------------------------------------------------------- batches and duplicates

#[tokio::test]
async fn a_batch_from_several_users_becomes_one_queue_message_per_message() {
    let stack = TestBed::start().await;
    assert!(queue_is_fifo_with_explicit_dedup(&stack.sqs, &stack.queue.url).await);
    let ana = phone_user(11);
    let rui = User::username_only("US.555", "@rui", "Rui");
    let eva = User {
        wa_id: Some("15550009999".into()),
        user_id: Some("BR.777".into()),
        name: "Eva".into(),
        username: None,
    };
    // Two changes in two entries; 12 messages, so more than one SQS batch of 10.
    let mut first = Vec::new();
    let mut expected: Vec<(String, String)> = Vec::new(); // (message id, group)
    for i in 0..6 {
        let (user, key) = match i % 3 {
            0 => (&ana, "15550000011"),
            1 => (&rui, "US.555"),
            _ => (&eva, "BR.777"),
        };
        let id = wamid(&format!("B1N{i}"));
        first.push(meta::text(user, &id, TS + i, &format!("part {i}")));
        expected.push((id, meta::user_tag(key).to_string()));
    }
    let mut second = Vec::new();
    for i in 0..6 {
        let id = wamid(&format!("B2N{i}"));
        second.push(meta::text(&ana, &id, TS + 10 + i, &format!("more {i}")));
        expected.push((id, meta::user_tag("15550000011").to_string()));
    }
    let mut body: Value = serde_json::from_str(&meta::notification(vec![meta::change(
        &[&ana, &rui, &eva],
        first,
        vec![],
    )]))
    .unwrap();
    body["entry"].as_array_mut().unwrap().push(
        json!({ "id": "102290129340399", "changes": [meta::change(&[&ana], second, vec![])] }),
    );
    let body = meta::escape_non_ascii(&body.to_string());
    assert_eq!(status(&stack.post_signed(&body).await), 200);

    let received = stack.drain().await;
    assert_eq!(received.len(), 12, "one queue message per inbound message");
    let mut got: Vec<(String, String)> = received
        .iter()
        .map(|r| {
            assert_eq!(r.dedup_id, r.envelope.message_tag.as_str());
            assert_eq!(r.group_id, r.envelope.user.as_str());
            assert_eq!(
                r.envelope.user,
                meta::user_tag(r.envelope.user_key().as_str())
            );
            (r.envelope.id.clone(), r.group_id.clone())
        })
        .collect();
    // Within each user's group, the notification order is kept.
    for group in [&ana, &rui, &eva]
        .map(|u| meta::user_tag(u.user_id.as_deref().or(u.wa_id.as_deref()).unwrap()).to_string())
    {
        let order = |v: &[(String, String)]| {
            v.iter()
                .filter(|(_, g)| *g == group)
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&got), order(&expected), "order within {group}");
    }
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    // Profile names come from the matching contact.
    let names: Vec<_> = received
        .iter()
        .filter(|r| r.envelope.sender.user_id.as_deref() == Some("US.555"))
        .map(|r| r.envelope.sender.profile_name.clone())
        .collect();
    assert_eq!(names, vec![Some("Rui".to_owned()); 2]);
}

#[tokio::test]
async fn the_same_notification_delivered_twice_is_received_once() {
    let stack = TestBed::start().await;
    let a = phone_user(3);
    let b = User::username_only("US.42", "@b", "B");
    let body = meta::notification(vec![
        meta::change(
            &[&a],
            vec![meta::text(&a, &wamid("DUP1"), TS, "one")],
            vec![],
        ),
        meta::change(
            &[&b],
            vec![meta::text(&b, &wamid("DUP2"), TS, "two")],
            vec![],
        ),
    ]);
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    // Meta delivers again (it did not see our 200, say).
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    // And a later notification repeats one message id alongside a new one.
    let again = meta::notification(vec![meta::change(
        &[&a],
        vec![
            meta::text(&a, &wamid("DUP1"), TS, "one"),
            meta::text(&a, &wamid("NEW3"), TS + 1, "three"),
        ],
        vec![],
    )]);
    assert_eq!(status(&stack.post_signed(&again).await), 200);
    let mut ids: Vec<String> = stack.drained_ids().await;
    ids.sort();
    assert_eq!(ids, vec![wamid("DUP1"), wamid("DUP2"), wamid("NEW3")]);
}

#[tokio::test]
async fn statuses_alone_are_acknowledged_and_nothing_is_enqueued() {
    let stack = TestBed::start().await;
    let mut failed = meta::status("wamid.OURS9", "15550000001", "failed", TS);
    failed["errors"] = json!([{ "code": 131047, "title": "Re-engagement message",
        "message": "Re-engagement message", "error_data": { "details": "More than 24 hours have passed" } }]);
    let mut by_bsuid = meta::status("wamid.OURS8", "", "read", TS);
    by_bsuid["recipient_user_id"] = json!("US.1");
    let body = meta::notification(vec![meta::change(
        &[],
        vec![],
        vec![
            meta::status("wamid.OURS1", "15550000001", "sent", TS),
            meta::status("wamid.OURS1", "15550000001", "delivered", TS + 1),
            meta::status("wamid.OURS1", "15550000001", "read", TS + 2),
            failed,
            by_bsuid,
            meta::status("wamid.OURS7", "15550000001", "a_status_from_the_future", TS),
        ],
    )]);
    let response = stack.post_signed(&body).await;
    assert_eq!(status(&response), 200);
    stack.assert_nothing_taken_in().await;
}

// ---------------------------------------------------------------- quarantine

#[tokio::test]
async fn a_signed_body_that_is_not_json_is_kept_raw_in_quarantine() {
    let stack = TestBed::start().await;
    let body = b"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"chan";
    let response = stack.handle(post(body, Some(&sign(body)))).await;
    assert_eq!(status(&response), 200, "never retried forever");
    assert!(stack.drain().await.is_empty());
    let keys = stack.quarantined().await;
    let digest = hex::encode(Sha256::digest(body));
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with(keys::QUARANTINE));
    assert!(keys[0].ends_with(&format!("/{digest}.json")), "{}", keys[0]);
    assert_eq!(
        stack.object(&keys[0]).await,
        body.to_vec(),
        "kept byte for byte"
    );
    // Meta's retry of the same body lands on the same key.
    let response = stack.handle(post(body, Some(&sign(body)))).await;
    assert_eq!(status(&response), 200);
    assert_eq!(stack.quarantined().await, keys);
}

#[tokio::test]
async fn a_message_naming_no_sender_is_quarantined_and_the_others_enqueued() {
    let stack = TestBed::start().await;
    let user = phone_user(4);
    let nobody = User {
        wa_id: None,
        user_id: None,
        name: "?".into(),
        username: None,
    };
    let body = meta::notification(vec![
        meta::change(
            &[&user],
            vec![meta::text(&user, &wamid("OK1"), TS, "fine")],
            vec![],
        ),
        meta::change(
            &[&nobody],
            vec![meta::text(&nobody, &wamid("ANON"), TS, "who?")],
            vec![],
        ),
    ]);
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope.id, wamid("OK1"));
    let keys = stack.quarantined().await;
    assert_eq!(keys.len(), 1);
    assert_eq!(stack.object(&keys[0]).await, body.into_bytes());
}

/// A contact, a status, an error and the metadata's display number with fields of the
/// wrong type, beside a valid message: the message is enqueued (completed from the
/// contact that parses), the valid status is counted, and the body is kept in quarantine
/// for a look at the new shape.
#[tokio::test]
async fn contacts_statuses_and_errors_that_do_not_parse_do_not_take_the_messages_with_them() {
    let stack = TestBed::start().await;
    let ana = phone_user(8);
    let mut body: Value = serde_json::from_str(&meta::notification(vec![meta::change(
        &[&ana],
        vec![meta::text(&ana, &wamid("TOL1"), TS, "still here?")],
        vec![
            meta::status(&wamid("OUT1"), "15550000008", "delivered", TS),
            meta::status(&wamid("OUT2"), "15550000008", "read", TS),
        ],
    )]))
    .expect("a notification");
    let value = &mut body["entry"][0]["changes"][0]["value"];
    value["contacts"]
        .as_array_mut()
        .expect("contacts")
        .push(json!({ "wa_id": 15550000009u64, "profile": { "name": ["not", "a", "name"] } }));
    value["statuses"][1]["timestamp"] = json!({ "not": "a time" });
    value["errors"] = json!([{ "code": "one hundred", "title": 7 }]);
    value["metadata"]["display_phone_number"] = json!(15550783881u64);
    let body = body.to_string();

    assert_eq!(status(&stack.post_signed(&body).await), 200);

    let received = stack.drain().await;
    assert_eq!(received.len(), 1, "the valid message is enqueued");
    assert_eq!(received[0].envelope.id, wamid("TOL1"));
    assert_eq!(
        received[0].envelope.sender.profile_name.as_deref(),
        Some("User 8"),
        "completed from the contact that parses"
    );
    let kept = stack.quarantined().await;
    assert_eq!(kept.len(), 1);
    assert_eq!(stack.object(&kept[0]).await, body.into_bytes());
}

#[tokio::test]
async fn one_message_with_a_wrongly_typed_field_is_dropped_and_the_others_of_the_post_enqueued() {
    let stack = TestBed::start().await;
    let ana = phone_user(6);
    let rui = phone_user(7);
    let mut body: Value = serde_json::from_str(&meta::notification(vec![meta::change(
        &[&ana, &rui],
        vec![
            meta::text(&ana, &wamid("LEN1"), TS, "first"),
            meta::text(&rui, &wamid("LEN2"), TS + 1, "broken"),
            meta::text(&ana, &wamid("LEN3"), TS + 2, "third"),
        ],
        vec![],
    )]))
    .unwrap();
    // A number where Meta documents a string.
    body["entry"][0]["changes"][0]["value"]["messages"][1]["text"]["body"] = json!(42);
    let body = body.to_string();

    assert_eq!(status(&stack.post_signed(&body).await), 200);

    let received = stack.drain().await;
    let ids: Vec<&str> = received.iter().map(|r| r.envelope.id.as_str()).collect();
    assert_eq!(ids, [wamid("LEN1"), wamid("LEN3")]);
    let keys = stack.quarantined().await;
    assert_eq!(keys.len(), 1, "the body is kept for the broken message");
    assert_eq!(stack.object(&keys[0]).await, body.into_bytes());
}

#[tokio::test]
async fn a_message_is_never_filed_under_another_users_contact() {
    let stack = TestBed::start().await;
    let ana = phone_user(8);
    let eva = User {
        wa_id: Some("15550008888".into()),
        user_id: Some("BR.888".into()),
        name: "Eva".into(),
        username: None,
    };
    // Ana's message, with Eva as the notification's only contact.
    let body = meta::notification(vec![meta::change(
        &[&eva],
        vec![meta::text(&ana, &wamid("WHO1"), TS, "mine")],
        vec![],
    )]);
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    let sender = &received[0].envelope.sender;
    assert_eq!(sender.wa_id, ana.wa_id);
    assert_eq!(sender.user_id, None, "not Eva's BSUID");
    assert_eq!(
        received[0].group_id,
        meta::user_tag(ana.wa_id.as_deref().unwrap()).as_str()
    );
}

// ---------------------------------------------------------------- hostile text

#[tokio::test]
async fn text_with_characters_sqs_refuses_travels_escaped_and_decodes_back() {
    let stack = TestBed::start().await;
    let user = phone_user(5);
    let hostile: String = ('\u{0}'..='\u{1F}')
        .chain([
            '\u{7F}', '\u{85}', '\u{FFFE}', '\u{FFFF}', '\u{D7FF}', '\u{E000}',
        ])
        .chain("ok \u{1F600} é \\ \" </script>".chars())
        .collect();
    let body = meta::single(&user, meta::text(&user, &wamid("HOSTILE"), TS, &hostile));
    assert!(body.is_ascii(), "Meta escapes non-ASCII");
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert!(queue::sqs_accepts(&received[0].body));
    assert_eq!(
        received[0].envelope.content,
        Content::Text { body: hostile },
        "decodes back to the original"
    );
}

// ---------------------------------------------------------------- SQS outages

#[tokio::test]
async fn when_sqs_is_down_the_webhook_answers_500_and_the_retry_enqueues() {
    let mut stack = TestBed::start_without_iam().await;
    let user = phone_user(6);
    let body = meta::notification(vec![meta::change(
        &[&user],
        vec![
            meta::text(&user, &wamid("OUT1"), TS, "one"),
            meta::text(&user, &wamid("OUT2"), TS + 1, "two"),
        ],
        vec![],
    )]);
    stack.moto.stop().await;
    let response = stack.post_signed(&body).await;
    assert_eq!(status(&response), 500, "Meta must deliver again");
    assert_eq!(text(&response), "try again later");

    // AWS is back (moto restarts empty; the template's resources are recreated).
    stack.moto.restart().await.expect("restart moto");
    let queue = create_resources(&stack.sqs, &stack.s3).await;
    assert_eq!(
        queue.url, stack.queue.url,
        "same queue URL after the outage"
    );

    // Meta's retry, through the same webhook (same clients) as before the outage.
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let ids: Vec<String> = stack.drained_ids().await;
    assert_eq!(ids, vec![wamid("OUT1"), wamid("OUT2")]);
}

#[tokio::test]
async fn a_missing_queue_answers_500_until_it_exists() {
    let stack = TestBed::start().await;
    // The webhook's own queue, not there yet (its role names no other queue).
    stack
        .sqs
        .delete_queue()
        .queue_url(&stack.queue.url)
        .send()
        .await
        .expect("delete the inbound queue");
    let missing = stack.queue.url.clone();
    let webhook = connect(&stack.moto, &missing, &[]).await;
    let user = phone_user(8);
    let body = meta::single(&user, meta::text(&user, &wamid("LATE"), TS, "anyone?"));
    let request = || post(body.as_bytes(), Some(&sign(body.as_bytes())));
    assert_eq!(status(&webhook.handle(request()).await), 500);

    let created = remedios_testkit::moto::create_queue_pair(&stack.sqs, &queue_spec())
        .await
        .unwrap();
    assert_eq!(created.url, missing);
    assert_eq!(status(&webhook.handle(request()).await), 200);
    let received = drain(&stack.sqs, &created.url).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope.id, wamid("LATE"));
}

#[tokio::test]
async fn when_the_quarantine_bucket_is_unreachable_the_body_is_not_acknowledged() {
    let stack = TestBed::start().await;
    stack
        .s3
        .delete_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("delete the empty bucket");
    let body = b"not json at all";
    let response = stack.handle(post(body, Some(&sign(body)))).await;
    assert_eq!(status(&response), 500, "not lost: Meta delivers again");
    remedios_testkit::moto::create_bucket(&stack.s3, BUCKET)
        .await
        .unwrap();
    let response = stack.handle(post(body, Some(&sign(body)))).await;
    assert_eq!(status(&response), 200);
    assert_eq!(stack.quarantined().await.len(), 1);
}

// ---------------------------------------------------------------- size bound

#[tokio::test]
async fn bodies_over_the_bound_answer_413_and_bodies_at_it_are_taken() {
    const BOUND: usize = webhook::config::MIN_BODY_BYTES;
    let stack = TestBed::start_with(&[("WEBHOOK_MAX_BODY_BYTES", &BOUND.to_string())]).await;
    let user = phone_user(9);
    let small = meta::single(&user, meta::text(&user, &wamid("BIG"), TS, "padded"));
    // JSON allows trailing whitespace: pad a valid notification to exactly the bound.
    let at_bound = format!("{small}{}", " ".repeat(BOUND - small.len()));
    assert_eq!(at_bound.len(), BOUND);
    let over = format!("{at_bound} ");

    let response = stack.post_signed(&over).await;
    assert_eq!(status(&response), 413);
    // Unsigned oversized bodies are refused by size too, without being read.
    let response = stack.handle(post(over.as_bytes(), None)).await;
    assert_eq!(status(&response), 413);
    stack.assert_nothing_taken_in().await;

    assert_eq!(status(&stack.post_signed(&at_bound).await), 200);
    let received = stack.drain().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].envelope.id, wamid("BIG"));
}

// ---------------------------------------------------------------- allow-list

/// `remedios deploy --subscribe` subscribes the whole business account: a message to
/// another of its numbers reaches the webhook too. Only the configured number's messages
/// are taken in; the others are acknowledged (Meta must not retry them) and dropped.
#[tokio::test]
async fn only_messages_to_the_configured_number_are_enqueued() {
    let stack = TestBed::start_with(&[("WHATSAPP_PHONE_NUMBER_ID", meta::PHONE_NUMBER_ID)]).await;
    let user = phone_user(3);
    let ours = meta::change(
        &[&user],
        vec![meta::text(&user, &wamid("N1"), TS, "hi")],
        vec![],
    );
    let mut theirs = meta::change(
        &[&user],
        vec![meta::text(&user, &wamid("N2"), TS, "hi")],
        vec![],
    );
    theirs["value"]["metadata"]["phone_number_id"] = "999000111222333".into();
    let body = meta::notification(vec![ours, theirs.clone()]);
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let ids: Vec<String> = stack.drained_ids().await;
    assert_eq!(ids, vec![wamid("N1")]);

    let only_theirs = meta::notification(vec![theirs]);
    assert_eq!(status(&stack.post_signed(&only_theirs).await), 200);
    stack.assert_nothing_taken_in().await;
}

#[tokio::test]
async fn only_allowed_senders_are_enqueued() {
    let stack = TestBed::start_with(&[("ALLOWED_SENDERS", "+1 (555) 000-0001, US.ALLOWED")]).await;
    let by_phone = phone_user(1); // 15550000001
    let by_bsuid = User::username_only("US.ALLOWED", "@ok", "Ok");
    let stranger = phone_user(2);
    let stranger_bsuid = User::username_only("US.OTHER", "@no", "No");
    let body = meta::notification(vec![
        meta::change(
            &[&by_phone],
            vec![meta::text(&by_phone, &wamid("A1"), TS, "hi")],
            vec![],
        ),
        meta::change(
            &[&stranger],
            vec![meta::text(&stranger, &wamid("S1"), TS, "hi")],
            vec![],
        ),
        meta::change(
            &[&by_bsuid],
            vec![meta::text(&by_bsuid, &wamid("A2"), TS, "hi")],
            vec![],
        ),
        meta::change(
            &[&stranger_bsuid],
            vec![meta::text(&stranger_bsuid, &wamid("S2"), TS, "hi")],
            vec![],
        ),
    ]);
    assert_eq!(status(&stack.post_signed(&body).await), 200);
    let mut ids: Vec<String> = stack.drained_ids().await;
    ids.sort();
    assert_eq!(ids, vec![wamid("A1"), wamid("A2")]);

    // A notification only from strangers is acknowledged and takes nothing in.
    let only_strangers = meta::single(&stranger, meta::text(&stranger, &wamid("S3"), TS, "hi"));
    assert_eq!(status(&stack.post_signed(&only_strangers).await), 200);
    stack.assert_nothing_taken_in().await;
}
