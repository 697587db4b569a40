//! The webhook's POST path without network: the constant-time signature check, the
//! parse of the notification, and the triage (envelopes serialised into SQS batch
//! entries with their group and deduplication ids). SQS itself is not measured.
//!
//! `cargo bench -p webhook --bench post_path`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use remedios_shared::signature;
use remedios_shared::user::SenderList;
use remedios_shared::user::TagKey;
use remedios_testkit::meta::{self, User};
use webhook::intake::{self, Intake};

const SECRET: &[u8] = b"bench-app-secret";
const NOW_MS: i64 = 1_767_225_600_000;

/// The usual notification: one text message from one user, shaped as Meta sends it.
fn one_message() -> String {
    let user = User {
        wa_id: Some("16505551234".into()),
        user_id: Some("US.13491208655302741918".into()),
        name: "Sheena Nelson".into(),
        username: None,
    };
    meta::single(
        &user,
        meta::text(
            &user,
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
            1_767_225_600,
            "Hello! Can you remind me what the dose was for the antibiotic, and whether I take it with food?",
        ),
    )
}

/// Ten messages from three users (texts and voice notes) in one notification.
fn ten_messages() -> String {
    let users = [
        User::phone("16505551234", "Sheena Nelson"),
        User::username_only("US.13491208655302741918", "@ana", "Ana Lima"),
        User {
            wa_id: Some("5511987654321".into()),
            user_id: Some("BR.5550001".into()),
            name: "João".into(),
            username: None,
        },
    ];
    let messages = (0..10)
        .map(|i| {
            let user = &users[i % users.len()];
            let id = format!("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMx{i:04}=");
            if i % 4 == 3 {
                meta::audio(
                    user,
                    &id,
                    1_767_225_600 + i as i64,
                    &format!("1234567{i}"),
                    "audio/ogg; codecs=opus",
                    true,
                )
            } else {
                meta::text(
                    user,
                    &id,
                    1_767_225_600 + i as i64,
                    "Olá! Queria saber se amanhã vai chover em Lisboa, e a que horas.",
                )
            }
        })
        .collect();
    meta::notification(vec![meta::change(
        &users.iter().collect::<Vec<_>>(),
        messages,
        vec![],
    )])
}

fn bench(c: &mut Criterion) {
    let allow = Intake {
        allow: SenderList::default(),
        staff: SenderList::default(),
        tags: TagKey::new(meta::USER_TAG_KEY).expect("the tests' tag key"),
        numbers: vec![meta::PHONE_NUMBER_ID.to_owned()],
    };
    let mut group = c.benchmark_group("post_path");
    for (name, body, expected) in [
        ("1_message", one_message(), 1),
        ("10_messages", ten_messages(), 10),
    ] {
        let body = body.into_bytes();
        let header = signature::sign(SECRET, &body);
        // The bench measures the real path: check it does the real work once.
        let planned =
            intake::verify_and_triage(SECRET, Some(header.as_bytes()), &body, NOW_MS, &allow)
                .expect("the bench body is correctly signed");
        assert_eq!(planned.messages.len(), expected);
        assert!(planned.quarantine.is_none());

        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("verify_parse_plan/{name}"), |b| {
            b.iter(|| {
                intake::verify_and_triage(
                    black_box(SECRET),
                    black_box(Some(header.as_bytes())),
                    black_box(&body),
                    NOW_MS,
                    &allow,
                )
            })
        });
        group.bench_function(format!("verify_only/{name}"), |b| {
            b.iter(|| {
                signature::verify(black_box(SECRET), black_box(&body), Some(header.as_bytes()))
            })
        });
        group.bench_function(format!("parse_plan_only/{name}"), |b| {
            b.iter(|| intake::triage(black_box(&body), NOW_MS, &allow))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
