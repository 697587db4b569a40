//! A business's own knowledge through the whole local stack with the real SmolLM2 model
//! server: `KNOWLEDGE_DIR` uploads a folder and indexes it before the functions start, a
//! question is answered with a fact only the material holds, and with
//! `KNOWLEDGE_UNCOVERED=decline` a question it does not cover gets the kind fixed text.

mod local_stack;

use std::collections::BTreeMap;

use local_stack::REPLY_TIMEOUT;
use remedios_local::chat::{Chat, Outgoing};
use remedios_testkit::meta;
use responder::texts::{FixedText, Lang};

const CLINIC: &str = "# Clínica Sol\n\nClínica Sol is a dental clinic in Valencia.\n\n\
## Opening hours\n\nMonday to Friday, 9:00 to 19:00. Closed on public holidays.\n\n\
## Wi-Fi\n\nThe Wi-Fi network for patients is SolGuest. The Wi-Fi password is TULIP-4417.\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_are_answered_from_the_material_and_uncovered_ones_declined() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let material = dir.path().join("material");
    std::fs::create_dir_all(&material).expect("mkdir");
    std::fs::write(material.join("clinic.md"), CLINIC).expect("write the material");
    let vars = BTreeMap::from([
        ("KNOWLEDGE".to_owned(), "on".to_owned()),
        ("KNOWLEDGE_UNCOVERED".to_owned(), "decline".to_owned()),
        ("KNOWLEDGE_DIR".to_owned(), material.display().to_string()),
    ]);
    let stack = local_stack::start(&dir.path().join("logs"), vars).await;
    let info = stack.info().clone();
    assert!(info.model_local, "the real model server, not a stand-in");
    let mut chat = Chat::connect(info.clone(), meta::User::phone("15550004444", "Patient"))
        .await
        .expect("the chat connects to the stack");

    let answer = chat
        .send(
            Outgoing::Text("What is the Wi-Fi password for patients?".into()),
            REPLY_TIMEOUT,
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("no answer: {e}"));
    let said = answer.replies.join("\n");
    assert!(
        said.contains("TULIP-4417"),
        "the answer carries the fact only the material holds: {said:?}"
    );

    let declined = chat
        .send(
            Outgoing::Text("Who won the football world cup in 1998?".into()),
            REPLY_TIMEOUT,
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("no reply: {e}"));
    assert_eq!(
        declined.replies,
        [FixedText::NotCovered.default_text(Lang::En)]
    );

    let log = std::fs::read_to_string(info.log_dir.join("functions.log")).expect("the log");
    let calls = remedios_shared::metrics::parse_lines(&log)
        .iter()
        .filter(|m| m["Function"] == "responder" && m.get("ModelCalls").is_some())
        .count();
    assert_eq!(calls, 1, "the declined question cost no model call");

    local_stack::shutdown(stack).await;
}
