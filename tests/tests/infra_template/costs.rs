//! What the README's cost estimate and the default prompt size assume of the template.

use super::*;

/// The README's cost estimate is worked out for the template's default sizes: its table of
/// what it assumes (memory, architecture, SQS batch size per function) says what the
/// template deploys, so a change of default shows up as a failing test, not a wrong bill.
#[test]
fn the_cost_estimate_assumes_the_templates_default_sizes() {
    let readme =
        std::fs::read_to_string(paths::workspace_root().join("README.md")).expect("README.md");
    let header = "| Function | Memory | Architecture | SQS batch size |";
    let table = readme
        .split_once(header)
        .expect("the cost estimate's table of assumed sizes")
        .1;
    let template = template();
    let stack = stack(&template, &[]);
    let mut checked = 0;
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        let id = match cells[0] {
            "webhook" => "WebhookFunction",
            "transcriber" => "TranscriberFunction",
            "responder" => "ResponderFunction",
            other => panic!("README cost table: unknown function {other}"),
        };
        let properties = stack
            .eval(&template.resources[id].properties)
            .expect("the function's properties evaluate")
            .expect("properties");
        let memory = properties["MemorySize"]
            .as_u64()
            .or_else(|| {
                properties["MemorySize"]
                    .as_str()
                    .and_then(|m| m.parse().ok())
            })
            .expect("a memory size");
        assert_eq!(cells[1], format!("{memory} MB"), "{id}: memory");
        assert_eq!(
            Some(cells[2]),
            properties["Architectures"][0].as_str(),
            "{id}: architecture"
        );
        let batch = properties["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .find(|(_, e)| e["Type"].as_str() == Some("SQS"))
            .and_then(|(_, e)| e["Properties"]["BatchSize"].as_u64())
            .map(|b| b.to_string())
            .unwrap_or_else(|| "none".to_owned());
        assert_eq!(cells[3], batch, "{id}: SQS batch size");
        checked += 1;
    }
    assert_eq!(checked, 3, "one row per function");
}

/// With the template's default parameters, the responder's prompt fits the host's
/// context (`Gpt4AllContextTokens`) with the answer: the system prompt, a question cut to
/// its bound and the passages of the material, with room left for history; the history
/// sent is cut to what is left (`Conversation::recent_messages`).
#[test]
fn the_templates_default_prompt_fits_the_hosts_default_context() {
    let template = template();
    let stack = stack(&template, &[]);
    let mut env = base_environment(&stack, RESPONDER_FUNCTION);
    env.insert("GPT4ALL_API_KEY".into(), "k".into());
    env.remove("GPT4ALL_API_KEY_PARAM");
    let env =
        remedios_shared::config::Env(env.into_iter().collect::<std::collections::HashMap<_, _>>());
    let config = responder::Config::from_env(&env).expect("the template's configuration");
    let model = &config.model;
    assert_eq!(model.context_tokens, 2048, "GPT4All's usual context");
    let knowledge = config.behaviour.knowledge.max_chars;
    let system = config.behaviour.system_prompt.chars().count();
    let worst = system + responder::decision::QUESTION_MAX_CHARS + knowledge;
    let room = model.prompt_chars();
    assert!(
        system + responder::decision::QUESTION_MAX_CHARS < room,
        "a question cut to its bound fits with the system prompt ({room} characters of prompt)"
    );
    assert!(
        system + 500 + knowledge + 1000 < room,
        "an everyday question, its passages and some history fit ({room} characters)"
    );
    eprintln!(
        "prompt room {room} characters; the longest question with passages takes {worst}: \
         longer ones are asked again without passages"
    );
}
