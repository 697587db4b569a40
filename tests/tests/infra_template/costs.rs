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

/// The estimate's fixed monthly lines count what the template creates: its alarms and the
/// metrics they read (CloudWatch bills $0.10 a month per metric an alarm reads), its one
/// dashboard, and the alarm topic's key, which exists only with an alarm e-mail.
#[test]
fn the_cost_estimates_fixed_lines_count_what_the_template_creates() {
    let readme =
        std::fs::read_to_string(paths::workspace_root().join("README.md")).expect("README.md");
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let template = template();
    let of_kind = |kind: &str| {
        template
            .resources
            .values()
            .filter(|r| r.kind == kind)
            .collect::<Vec<_>>()
    };
    let alarms = of_kind("AWS::CloudWatch::Alarm");
    let metrics: usize = alarms
        .iter()
        .map(|alarm| match alarm.properties.get("Metrics") {
            Some(queries) => queries
                .as_sequence()
                .into_iter()
                .flatten()
                .filter(|q| q.get("MetricStat").is_some())
                .count(),
            None => usize::from(alarm.properties.get("MetricName").is_some()),
        })
        .sum();
    let number = |n: usize| {
        [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen",
        ]
        .get(n)
        .map_or_else(|| n.to_string(), |w| (*w).to_owned())
    };
    let claim = format!(
        "{} alarms over {} metrics, ${:.2}",
        number(alarms.len()),
        number(metrics),
        metrics as f64 * 0.10
    );
    assert!(readme.contains(&claim), "the README should say: {claim}");
    assert_eq!(of_kind("AWS::CloudWatch::Dashboard").len(), 1);
    assert!(readme.contains("the dashboard, $3"));
    let keys = of_kind("AWS::KMS::Key");
    assert_eq!(keys.len(), 1, "one customer-managed key");
    assert_eq!(keys[0].condition.as_deref(), Some("HasAlarmEmail"));
    assert!(readme.contains("the alarm topic's KMS key, $1 when an alarm e-mail is set"));
}
