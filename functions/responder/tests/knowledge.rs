//! Answers from a business's own material, against moto (the responder's IAM role lists
//! and reads `knowledge/` and keeps the index in `knowledge-index/`), the Graph API
//! emulator and the real SmolLM2 model behind the GPT4All rules gate.

mod common;

use common::*;
use remedios_shared::clock::now_ms;
use responder::config::{KnowledgeSettings, Uncovered};
use responder::knowledge::{self, Loaded};
use responder::texts::{FixedText, Lang};
use responder::{Behaviour, Responder};

const CLINIC: &str = "# Clínica Sol\n\nClínica Sol is a dental clinic in Valencia.\n\n\
## Opening hours\n\nMonday to Friday, 9:00 to 19:00. Closed on public holidays.\n\n\
## Wi-Fi\n\nThe Wi-Fi network for patients is SolGuest. The Wi-Fi password is TULIP-4417.\n\n\
## Prices\n\nA check-up costs 40 euros. A cleaning costs 55 euros.\n";

const CLINICA: &str = "## Aparcamiento\n\nLos pacientes aparcan gratis en el garaje de la \
Calle Mayor, planta -2, con el tique sellado en recepción.\n\n## Horario\n\nDe lunes a \
viernes, de 9:00 a 19:00. Cerrado los festivos.\n";

/// The bench with the clinic's material uploaded (as the operator, the admin).
async fn with_material() -> TestBed {
    let bench = TestBed::start().await;
    for (name, text) in [("clinic.md", CLINIC), ("es/clinica.md", CLINICA)] {
        bench
            .store
            .put(
                &format!("knowledge/{name}"),
                text.as_bytes().to_vec(),
                "text/markdown",
            )
            .await
            .expect("upload the material");
    }
    bench
        .store
        .put(
            "knowledge/logo.png",
            vec![0x89, b'P', b'N', b'G'],
            "image/png",
        )
        .await
        .expect("upload a file that is not material");
    bench
}

/// A responder with the knowledge loaded as its own role does at cold start.
async fn knowing(bench: &TestBed, uncovered: Uncovered) -> Responder {
    let (knowledge, _) = knowledge::load_or_build(&bench.responder_store, now_ms())
        .await
        .expect("the knowledge loads as the responder's role");
    let behaviour = Behaviour {
        knowledge: KnowledgeSettings {
            enabled: true,
            uncovered,
            ..KnowledgeSettings::default()
        },
        ..Behaviour::default()
    };
    bench
        .responder_with(bench.model_settings(), behaviour)
        .with_knowledge(knowledge)
}

/// Asks `question` as a text job (handled without failure) and gives back the last user
/// message (the question, then this turn's passages) of the one request that reached the
/// model gate, after checking that the system message carries no passage.
async fn passages_for(bench: &TestBed, responder: &Responder, id: &str, question: &str) -> String {
    let job = text_job(id, question);
    let response = responder.handle(event(&[(&job, 1)])).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    let forwarded = bench.gate.forwarded();
    assert_eq!(forwarded.len(), 1);
    let messages = &forwarded[0].messages;
    assert!(
        !messages[0].content.contains("[1]"),
        "the system message stays the same every turn: {}",
        messages[0].content
    );
    let last = messages.last().expect("a question");
    assert_eq!(last.role, "user");
    assert!(last.content.starts_with(question), "{}", last.content);
    last.content.clone()
}

#[tokio::test]
async fn the_index_is_built_once_stored_and_rebuilt_when_the_material_changes() {
    let bench = with_material().await;
    let store = &bench.responder_store;
    let (first, loaded) = knowledge::load_or_build(store, now_ms())
        .await
        .expect("built");
    assert_eq!(loaded, Loaded::Built);
    assert_eq!(
        first.material.keys().collect::<Vec<_>>(),
        ["clinic.md", "es/clinica.md"],
        "text files only"
    );
    assert_eq!(first.passages().len(), 6, "{:?}", first.passages());
    let (second, loaded) = knowledge::load_or_build(store, now_ms())
        .await
        .expect("loaded");
    assert_eq!(
        loaded,
        Loaded::Stored,
        "the stored index matches the material"
    );
    assert_eq!(second.passages(), first.passages());

    bench
        .store
        .put(
            "knowledge/clinic.md",
            format!("{CLINIC}\n## Parking\n\nThere is no parking at the clinic.\n").into_bytes(),
            "text/markdown",
        )
        .await
        .expect("change the material");
    let (third, loaded) = knowledge::load_or_build(store, now_ms())
        .await
        .expect("rebuilt");
    assert_eq!(loaded, Loaded::Built, "a changed file rebuilds the index");
    assert_eq!(third.passages().len(), 7);
}

#[tokio::test]
async fn a_question_is_answered_from_the_passage_that_holds_its_fact() {
    let bench = with_material().await;
    let responder = knowing(&bench, Uncovered::Answer).await;
    let passages = passages_for(
        &bench,
        &responder,
        "wamid.KB1",
        "What is the Wi-Fi password for patients?",
    )
    .await;
    assert!(
        passages.contains("[1] Wi-Fi: The Wi-Fi network for patients is SolGuest"),
        "the passage with the fact comes first in the prompt: {passages}"
    );
    assert!(!passages.contains("Aparcamiento"), "{passages}");
    let sent = bench.bodies();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains("TULIP-4417"),
        "the answer carries the fact only the material holds: {:?} (asked: {passages:?})",
        sent[0]
    );
}

#[tokio::test]
async fn a_spanish_question_retrieves_the_spanish_passage() {
    let bench = with_material().await;
    let responder = knowing(&bench, Uncovered::Answer).await;
    let passages = passages_for(
        &bench,
        &responder,
        "wamid.KB2",
        "¿Dónde pueden aparcar los pacientes cuando vienen a la consulta?",
    )
    .await;
    assert!(
        passages.contains("[1] Aparcamiento: Los pacientes aparcan gratis"),
        "stemmed Spanish finds the Spanish passage: {passages}"
    );
    assert_eq!(bench.bodies().len(), 1);
}

#[tokio::test]
async fn an_uncovered_question_is_declined_or_answered_freely_as_configured() {
    let bench = with_material().await;
    let question = "Who won the football world cup in 1998?";
    let declining = knowing(&bench, Uncovered::Decline).await;
    let job = text_job("wamid.KB3", question);

    let response = declining.handle(event(&[(&job, 1)])).await;

    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(
        bench.bodies(),
        [FixedText::NotCovered.default_text(Lang::En)],
        "a kind fixed text"
    );
    assert!(bench.gate.forwarded().is_empty(), "and no model call");

    let answering = knowing(&bench, Uncovered::Answer).await;
    let job = text_job("wamid.KB4", question);
    let response = answering.handle(event(&[(&job, 1)])).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    let forwarded = bench.gate.forwarded();
    assert_eq!(forwarded.len(), 1, "the model answers freely");
    assert!(
        forwarded[0]
            .messages
            .iter()
            .all(|m| !m.content.contains("[1]")),
        "with no passage in the prompt: {:?}",
        forwarded[0].messages
    );
    assert_eq!(bench.bodies().len(), 2);
}

/// An operator uploads, beside good material, a file saved as UTF-16, one over the size
/// limit and one with Windows line endings (all with `aws s3 cp`, as the README allows).
/// The responder's cold start still loads the knowledge, leaves out the two bad files and
/// says why (what its `KnowledgeFilesSkipped` metric counts), keeps the Windows file's
/// headings, and users are answered from the material.
#[tokio::test]
async fn a_bad_material_file_is_left_out_and_everyone_is_still_answered_from_the_rest() {
    let bench = with_material().await;
    // As Windows' Notepad saves "Unicode": a byte order mark, then UTF-16LE.
    let utf16: Vec<u8> = "\u{feff}## Holidays\n\nClosed in August."
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let huge = vec![b'a'; knowledge::MAX_FILE_BYTES + 1];
    let crlf = "## Insurance\r\n\r\nWe accept Sanitas and Adeslas dental insurance.\r\n\r\n\
## Cancellations\r\n\r\nCancel at least 24 hours ahead by phone.\r\n";
    for (name, bytes) in [
        ("holidays.md", utf16),
        ("dump.txt", huge),
        ("insurance.md", crlf.as_bytes().to_vec()),
    ] {
        bench
            .store
            .put(&format!("knowledge/{name}"), bytes, "text/markdown")
            .await
            .expect("upload");
    }

    let (loaded, _) = knowledge::load_or_build(&bench.responder_store, now_ms())
        .await
        .expect("the knowledge loads despite the bad files");
    let skipped: Vec<(&str, &knowledge::Skip)> = loaded
        .skipped
        .iter()
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "dump.txt",
                &knowledge::Skip::TooBig {
                    bytes: knowledge::MAX_FILE_BYTES + 1
                }
            ),
            ("holidays.md", &knowledge::Skip::NotText),
        ]
    );
    let headings: Vec<_> = loaded
        .passages()
        .iter()
        .filter(|p| p.source == "insurance.md")
        .map(|p| (p.heading.as_deref(), p.text.contains('\r')))
        .collect();
    assert_eq!(
        headings,
        [(Some("Insurance"), false), (Some("Cancellations"), false)]
    );
    // A second cold start does not index again, and still knows what it left out.
    let (again, how) = knowledge::load_or_build(&bench.responder_store, now_ms())
        .await
        .expect("loaded");
    assert_eq!(how, Loaded::Stored);
    assert_eq!(again.skipped, loaded.skipped);

    let responder = knowing(&bench, Uncovered::Answer).await;
    let passages = passages_for(
        &bench,
        &responder,
        "wamid.KBBAD1",
        "Which dental insurance do you accept?",
    )
    .await;
    assert!(
        passages.contains("[1] Insurance: We accept Sanitas and Adeslas"),
        "{passages}"
    );
    assert_eq!(bench.bodies().len(), 1, "the user is answered");
}
