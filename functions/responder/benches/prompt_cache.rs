//! What ordering the prompt for the host's cache saves: the time to the answer at each
//! turn of a ten-turn conversation with the business's knowledge on, on one real model
//! server (llama-cpp-python's server running SmolLM2-135M, which keeps the last prompt's
//! state and reuses its longest common start, as llama.cpp's server does per slot).
//!
//! - `passages in the system message` (the layout before `b0bb749`): every turn's
//!   passages change the system message, so the cache is lost from the first tokens.
//! - `passages after the history` ([`responder::compose::prompt`]): the system message
//!   and the history are the previous turn's prompt, so only the last question, its
//!   answer and this turn's question with its passages are computed.
//!
//! Both conversations are the same (the same questions, passages and stored answers);
//! they run alternately, three times each, in one run. `cargo bench -p responder --bench
//! prompt_cache`.

use std::time::{Duration, Instant};

use remedios_testkit::model_server::LlmServer;
use responder::compose::{length_instruction, prompt};
use responder::config::{DEFAULT_SYSTEM_PROMPT, ModelSettings};
use responder::gpt4all::{ChatMessage, Gpt4AllClient, Role};
use responder::knowledge::{self, Index, Knowledge};

const MATERIAL: &str = "# Clínica Sol\n\nClínica Sol is a dental clinic in Valencia, in the old town, \
next to the Mercado Central. We treat adults and children.\n\n\
## Opening hours\n\nMonday to Friday, 9:00 to 19:00. Saturdays 10:00 to 14:00. Closed on \
Sundays and public holidays, and for two weeks in August.\n\n\
## Appointments\n\nBook by phone, on WhatsApp or at reception. We keep two urgent slots \
every morning for pain or a broken tooth; call before 10:00 to get one.\n\n\
## Prices\n\nA check-up costs 40 euros. A cleaning costs 55 euros. A filling costs from 70 \
euros. Whitening costs 250 euros. Children under 12 have free check-ups.\n\n\
## Payment\n\nWe take cash, cards and Bizum. Treatments over 600 euros can be paid in six \
monthly instalments without interest.\n\n\
## Insurance\n\nWe accept Sanitas, Adeslas and DKV dental insurance. Bring your card; we \
check your cover before any treatment.\n\n\
## Parking\n\nPatients park free at the Calle Mayor garage, level -2, with the ticket \
stamped at reception. Bicycles can be left in our courtyard.\n\n\
## Wi-Fi\n\nThe Wi-Fi network for patients is SolGuest. The password is TULIP-4417.\n\n\
## Cancellations\n\nCancel at least 24 hours ahead by phone or WhatsApp. A missed visit \
without notice costs 20 euros.\n\n\
## Children\n\nOur paediatric dentist, Dr Marta Ruiz, sees children on Tuesday and \
Thursday afternoons. Parents stay in the room.\n\n\
## Emergencies\n\nOutside opening hours call 600 123 456 for the dentist on duty.\n";

const TURNS: [(&str, &str); 10] = [
    (
        "When are you open?",
        "We are open Monday to Friday from 9:00 to 19:00 and on Saturdays from 10:00 to 14:00. We close on Sundays, public holidays and two weeks in August.",
    ),
    (
        "How much is a cleaning?",
        "A cleaning costs 55 euros. A check-up is 40 euros, and children under 12 have free check-ups.",
    ),
    (
        "Do you take my Sanitas insurance?",
        "Yes, we accept Sanitas, as well as Adeslas and DKV. Bring your card and we will check your cover before any treatment.",
    ),
    (
        "Where can I park?",
        "You can park free at the Calle Mayor garage, level -2. Ask reception to stamp your ticket.",
    ),
    (
        "Can I pay whitening in instalments?",
        "Whitening costs 250 euros. Instalments are for treatments over 600 euros, so whitening is paid at once, by cash, card or Bizum.",
    ),
    (
        "What is the Wi-Fi password?",
        "The Wi-Fi network for patients is SolGuest and the password is TULIP-4417.",
    ),
    (
        "I need to cancel tomorrow's visit.",
        "No problem. Please cancel at least 24 hours ahead by phone or WhatsApp; a missed visit without notice costs 20 euros.",
    ),
    (
        "Who sees children?",
        "Dr Marta Ruiz, our paediatric dentist, sees children on Tuesday and Thursday afternoons, with parents in the room.",
    ),
    (
        "My tooth broke, what do I do?",
        "We keep two urgent slots every morning: call before 10:00 to get one. Outside opening hours, call 600 123 456.",
    ),
    ("How can I book a visit for my daughter?", ""),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    PassagesInSystem,
    PassagesAfterHistory,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::PassagesInSystem => "passages in the system message",
            Layout::PassagesAfterHistory => "passages after the history",
        }
    }

    fn messages(
        self,
        system: &str,
        history: Vec<ChatMessage>,
        passages: &str,
        question: &str,
    ) -> Vec<ChatMessage> {
        match self {
            Layout::PassagesAfterHistory => prompt(system, history, passages, question),
            Layout::PassagesInSystem => {
                let mut messages = vec![ChatMessage::new(
                    Role::System,
                    format!("{system}\n\n{passages}"),
                )];
                messages.extend(history);
                messages.push(ChatMessage::new(Role::User, question));
                messages
            }
        }
    }
}

/// The time to the answer at each turn of one conversation in `layout`.
async fn conversation(
    client: &Gpt4AllClient,
    knowledge: &Knowledge,
    layout: Layout,
) -> Vec<(Duration, u32, u32)> {
    let system = format!(
        "{DEFAULT_SYSTEM_PROMPT}{}",
        length_instruction(client.settings().max_tokens)
    );
    let mut history = Vec::new();
    let mut times = Vec::new();
    for (question, answer) in TURNS {
        let passages = knowledge::instruction(&knowledge.search(question, 3, 2400));
        let messages = layout.messages(&system, history.clone(), &passages, question);
        let started = Instant::now();
        let completion = client
            .ask(&messages, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("turn {}: {e}", times.len() + 1));
        times.push((
            started.elapsed(),
            completion.usage.map_or(0, |u| u.prompt_tokens),
            completion.usage.map_or(0, |u| u.completion_tokens),
        ));
        history.push(ChatMessage::new(Role::User, question));
        history.push(ChatMessage::new(Role::Assistant, answer));
    }
    times
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let llm = LlmServer::start()
            .await
            .expect("the model server (run scripts/bootstrap.sh)");
        let mut settings = ModelSettings::new(
            llm.base_url().parse().expect("a URL"),
            Some(llm.model().to_owned()),
        );
        // Few answer tokens, so that the time is mostly the prompt's: what the cache saves.
        settings.max_tokens = 16;
        settings.temperature = 0.0;
        let client = Gpt4AllClient::new(settings, None).expect("a client");
        let index = Index::build(
            &[("clinic.md".to_owned(), MATERIAL.to_owned())],
            Default::default(),
            0,
        );
        let knowledge = Knowledge::from_index(index);
        // One conversation to warm the server up (model pages, threads).
        conversation(&client, &knowledge, Layout::PassagesAfterHistory).await;

        // A turn whose passages are the previous turn's keeps the old layout's cache too.
        let mut previous = String::new();
        let same: String = TURNS
            .iter()
            .map(|(question, _)| {
                let passages = knowledge::instruction(&knowledge.search(question, 3, 2400));
                let same = passages == previous;
                previous = passages;
                format!("{:>6}", if same { "same" } else { "new" })
            })
            .collect();
        let layouts = [Layout::PassagesInSystem, Layout::PassagesAfterHistory];
        let mut results: Vec<Vec<Vec<(Duration, u32, u32)>>> = vec![Vec::new(), Vec::new()];
        for round in 0..3 {
            // Alternate which goes first, so neither always follows the other.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                results[i].push(conversation(&client, &knowledge, layouts[i]).await);
            }
        }
        println!(
            "Time to the answer by turn (median of 3 conversations each, ms), at most 16 answer tokens:"
        );
        println!(
            "{:<34} {}",
            "layout",
            (1..=10).map(|t| format!("{t:>6}")).collect::<String>()
        );
        println!("{:<34} {same}", "passages against the previous turn");
        let mut turn10 = Vec::new();
        for (i, layout) in layouts.iter().enumerate() {
            let mut line = format!("{:<34} ", layout.name());
            let mut medians = Vec::new();
            for turn in 0..10 {
                let mut times: Vec<Duration> = results[i].iter().map(|c| c[turn].0).collect();
                times.sort_unstable();
                medians.push(times[1]);
                line.push_str(&format!("{:>6.0}", ms(times[1])));
            }
            println!("{line}");
            for (what, tokens) in [
                ("  prompt tokens", results[i][0].iter().map(|c| c.1).collect::<Vec<_>>()),
                (
                    "  answer tokens (first run)",
                    results[i][0].iter().map(|c| c.2).collect(),
                ),
            ] {
                let tokens: String = tokens.iter().map(|t| format!("{t:>6}")).collect();
                println!("{what:<34} {tokens}");
            }
            turn10.push(medians[9]);
            let later: Duration = medians[1..].iter().sum();
            println!(
                "{:<34} turn 10: {:.0} ms; turns 2-10 in all: {:.0} ms",
                "",
                ms(medians[9]),
                ms(later)
            );
        }
        println!(
            "turn 10 with the cache-friendly layout: {:.2}x the time of the old one",
            ms(turn10[1]) / ms(turn10[0])
        );
    });
}
