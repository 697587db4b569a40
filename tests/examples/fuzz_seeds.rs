//! Writes the webhook fuzz seeds (`fuzz/seeds/webhook_body/*.json`): notification bodies as
//! Meta sends them, built with the signed-notification builders of `remedios_testkit::meta`,
//! one per message type and shape the webhook handles. Run by `fuzz/make-seeds.sh`:
//!
//! ```sh
//! cargo run -p remedios-e2e --example fuzz_seeds -- fuzz/seeds/webhook_body
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use remedios_testkit::meta::{self, User};
use serde_json::{Value, json};

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: fuzz_seeds <output directory>")?
        .into();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, body) in seeds() {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("wrote {} webhook seeds to {}", seeds().len(), dir.display());
    Ok(())
}

fn seeds() -> Vec<(&'static str, String)> {
    let ana = User::phone("15550100001", "Ana");
    let bo = User::username_only("US.1349", "@bo", "Bo Ström");
    let ts = 1_750_000_000;
    let msg = |user: &User, id: &str, kind: &str, payload: Value| {
        meta::message(user, id, ts, kind, payload)
    };
    let media = |id: &str, mime: &str| json!({ "id": id, "mime_type": mime, "sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" });
    let mut with_context = meta::text(&ana, "wamid.ctx", ts, "and this?");
    with_context["context"] =
        json!({ "from": "15550783881", "id": "wamid.ours", "forwarded": true });
    let mut from_ad = meta::text(&ana, "wamid.ad", ts, "I saw your ad");
    from_ad["referral"] = json!({ "source_url": "https://fb.me/x", "source_type": "ad", "source_id": "1", "headline": "Remedios", "ctwa_clid": "abc" });
    let mut in_group = meta::text(&bo, "wamid.grp", ts, "hello group");
    in_group["group_id"] = "120363000000000000@g.us".into();

    vec![
        ("text", meta::single(&ana, meta::text(&ana, "wamid.t1", ts, "Remind me to take my tablets at 8"))),
        ("text_username", meta::single(&bo, meta::text(&bo, "wamid.t2", ts, "olá, ¿qué tal? 😀 — Привет"))),
        ("voice_note", meta::single(&ana, meta::audio(&ana, "wamid.v1", ts, "1037543291543636", "audio/ogg; codecs=opus", true))),
        ("audio_file", meta::single(&bo, meta::audio(&bo, "wamid.a1", ts, "2037543291543636", "audio/mpeg", false))),
        ("image", meta::single(&ana, msg(&ana, "wamid.i1", "image", { let mut m = media("3", "image/jpeg"); m["caption"] = "my rash".into(); m }))),
        ("document", meta::single(&ana, msg(&ana, "wamid.d1", "document", { let mut m = media("4", "application/pdf"); m["filename"] = "results.pdf".into(); m }))),
        ("video_sticker", meta::notification(vec![meta::change(&[&ana], vec![
            msg(&ana, "wamid.vid", "video", media("5", "video/mp4")),
            msg(&ana, "wamid.stk", "sticker", { let mut m = media("6", "image/webp"); m["animated"] = false.into(); m }),
        ], vec![])])),
        ("location", meta::single(&ana, msg(&ana, "wamid.l1", "location", json!({ "latitude": 38.7223, "longitude": -9.1393, "name": "Clinic", "address": "Rua X 1" })))),
        ("contacts", meta::single(&ana, msg(&ana, "wamid.c1", "contacts", json!([{ "name": { "formatted_name": "Dr Who", "first_name": "Dr" }, "phones": [{ "phone": "+1 555 0100", "wa_id": "15550100", "type": "CELL" }] }])))),
        ("interactive", meta::notification(vec![meta::change(&[&ana], vec![
            msg(&ana, "wamid.b1", "interactive", json!({ "type": "button_reply", "button_reply": { "id": "yes", "title": "Yes" } })),
            msg(&ana, "wamid.b2", "interactive", json!({ "type": "list_reply", "list_reply": { "id": "r2", "title": "Tuesday", "description": "pm" } })),
            msg(&ana, "wamid.b3", "interactive", json!({ "type": "nfm_reply", "nfm_reply": { "name": "flow", "body": "Sent", "response_json": "{\"a\":1}" } })),
        ], vec![])])),
        ("button_reaction", meta::notification(vec![meta::change(&[&bo], vec![
            msg(&bo, "wamid.btn", "button", json!({ "payload": "STOP", "text": "Stop" })),
            msg(&bo, "wamid.r1", "reaction", json!({ "message_id": "wamid.ours", "emoji": "👍" })),
            msg(&bo, "wamid.r2", "reaction", json!({ "message_id": "wamid.ours", "emoji": "" })),
        ], vec![])])),
        ("order_system", meta::notification(vec![meta::change(&[&ana], vec![
            msg(&ana, "wamid.o1", "order", json!({ "catalog_id": "9", "text": "asap", "product_items": [{ "product_retailer_id": "p1", "quantity": 2, "item_price": 3.5, "currency": "EUR" }] })),
            msg(&ana, "wamid.s1", "system", json!({ "body": "changed number", "type": "user_changed_number", "wa_id": "15550100001", "new_wa_id": "15550100002" })),
        ], vec![])])),
        ("unsupported", meta::single(&ana, { let mut m = msg(&ana, "wamid.u1", "unsupported", json!({ "type": "poll" })); m["errors"] = json!([{ "code": 131051, "title": "Message type unknown", "message": "Message type unknown", "error_data": { "details": "poll" } }]); m })),
        ("context_referral_group", meta::notification(vec![meta::change(&[&ana, &bo], vec![with_context, from_ad, in_group], vec![])])),
        ("two_users_burst", meta::notification(vec![
            meta::change(&[&ana], (1..=3).map(|i| meta::text(&ana, &format!("wamid.burst{i}"), ts + i, &format!("part {i}"))).collect(), vec![]),
            meta::change(&[&bo], vec![meta::text(&bo, "wamid.burst9", ts, "me too")], vec![]),
        ])),
        ("statuses", meta::notification(vec![meta::change(&[], vec![], vec![
            meta::status("wamid.out1", "15550100001", "delivered", ts),
            { let mut s = meta::status("wamid.out2", "15550100001", "failed", ts); s["errors"] = json!([{ "code": 131047, "title": "Re-engagement message" }]); s },
        ])])),
        ("change_errors", json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": { "messaging_product": "whatsapp", "metadata": { "display_phone_number": meta::DISPLAY_NUMBER, "phone_number_id": meta::PHONE_NUMBER_ID }, "errors": [{ "code": 130472, "title": "User's number is part of an experiment" }] } }] }] }).to_string()),
        ("other_field", json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{ "field": "account_update", "value": {} }] }] }).to_string()),
        ("other_object", json!({ "object": "page", "entry": [] }).to_string()),
    ]
}
