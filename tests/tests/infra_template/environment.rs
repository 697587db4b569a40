//! Each function's environment: what the template sets, what the code declares and
//! accepts, what the README documents and what `remedios up` passes on.

use super::*;

/// The environment each function gets, as its configuration expects it.
fn expected_environment(function_id: &str, layer: bool) -> BTreeSet<&'static str> {
    let mut vars = BTreeSet::from(["BUCKET_NAME", "LOG_FORMAT", "RUST_LOG"]);
    vars.extend(match function_id {
        WEBHOOK_FUNCTION => vec![
            "INBOUND_QUEUE_URL",
            "WHATSAPP_VERIFY_TOKEN_PARAM",
            "WHATSAPP_APP_SECRET_PARAM",
            "USER_TAG_KEY_PARAM",
            "ALLOWED_SENDERS",
            "WHATSAPP_PHONE_NUMBER_ID",
            "STAFF_NUMBERS",
        ],
        TRANSCRIBER_FUNCTION => vec![
            "INBOUND_QUEUE_URL",
            "REPLY_QUEUE_URL",
            "WHATSAPP_ACCESS_TOKEN_PARAM",
            "GRAPH_API_VERSION",
            "MEDIA_MAX_BYTES",
            "AUDIO_MAX_SECONDS",
            if layer {
                "WHISPER_MODEL_PATH"
            } else {
                "WHISPER_MODEL_S3_KEY"
            },
            "WHISPER_LANGUAGE",
            "WHISPER_VAD",
            "WHISPER_THREADS",
            "INBOUND_MAX_RECEIVE_COUNT",
            "LIMIT_MESSAGES_PER_MINUTE",
            "LIMIT_MESSAGES_PER_DAY",
            "LIMIT_AUDIO_MINUTES_PER_DAY",
            "LIMITS_EXEMPT",
            "SPEECH_LANES",
            "INBOUND_MAX_CONCURRENCY",
        ],
        RESPONDER_FUNCTION => vec![
            "REPLY_QUEUE_URL",
            "WHATSAPP_ACCESS_TOKEN_PARAM",
            "GRAPH_API_VERSION",
            "GPT4ALL_URL",
            "GPT4ALL_MODEL",
            "GPT4ALL_API_KEY_PARAM",
            "GPT4ALL_KIND",
            "GPT4ALL_CONCURRENCY",
            "MODEL_HOSTS",
            "GPT4ALL_MAX_TOKENS",
            "GPT4ALL_CONTEXT_TOKENS",
            "GPT4ALL_TEMPERATURE",
            "GPT4ALL_TIMEOUT_SECONDS",
            "HISTORY_MAX_TURNS",
            "HISTORY_MAX_CHARS",
            "SYSTEM_PROMPT",
            "ECHO_TRANSCRIPT",
            "COMBINE_MESSAGES",
            "REENGAGEMENT_TEMPLATE",
            "REPLY_MODE",
            "SUMMARY",
            "SUMMARY_MIN_SECONDS",
            "KNOWLEDGE",
            "KNOWLEDGE_UNCOVERED",
            "KNOWLEDGE_PASSAGES",
            "KNOWLEDGE_MAX_CHARS",
            "STAFF_NUMBERS",
            "HANDOFF_APP",
            "HANDOFF_HOURS",
            "HANDOFF_TIMEOUT_MINUTES",
            "HANDOFF_PHRASES",
            "VOICE_REPLY",
            "VOICE_TEXT_COPY",
            "VOICES",
            "REPLY_MAX_RECEIVE_COUNT",
        ],
        other => panic!("no expectations for {other}"),
    });
    vars
}

/// Variables a function reads that the template leaves unset on purpose.
const LEFT_AT_DEFAULT: [(&str, &str); 11] = [
    (
        "VOICE_ENGINE_DIR",
        "the engine's layer mounts at /opt/voice; set only to run it from elsewhere (remedios up)",
    ),
    (
        "TRANSCRIBER_BUILD",
        "auto suits every CPU; avx2 is the operator's way back, set by hand",
    ),
    (
        "GRAPH_MEDIA_HOSTS",
        "Meta's media domains are always allowed; more only for the emulator",
    ),
    (
        "WEBHOOK_MAX_BODY_BYTES",
        "its default, 4 MiB, is above the largest body Meta sends",
    ),
    (
        "GPT4ALL_TOP_P",
        "the responder's default suits GPT4All's models",
    ),
    (
        "GPT4ALL_RETRIES",
        "the responder's default retry budget fits its timeout",
    ),
    (
        "NORMALIZE_TEST_RECIPIENTS",
        "only for Meta's test numbers, off by default",
    ),
    (
        "GRAPH_API_BASE_URL",
        "points at the Graph API emulator in tests",
    ),
    ("AWS_ENDPOINT_URL", "points the SDK at a local emulator"),
    ("AWS_ENDPOINT_URL_S3", "points the SDK at a local emulator"),
    ("S3_FORCE_PATH_STYLE", "for local emulators"),
];

/// Variables of which one is enough: the whisper model comes from the bucket or a layer.
const ONE_OF: [(&str, &str); 1] = [("WHISPER_MODEL_PATH", "WHISPER_MODEL_S3_KEY")];

/// What `function_id` reads, as its configuration declares it.
fn declared(function_id: &str) -> Vec<Setting> {
    match function_id {
        WEBHOOK_FUNCTION => webhook::config::settings(),
        TRANSCRIBER_FUNCTION => transcriber::config::settings(),
        RESPONDER_FUNCTION => responder::config::settings(),
        other => panic!("no configuration for {other}"),
    }
}

/// Names of the environment variables a function reads: its declared settings, a
/// secret by its `_PARAM` as deployed, families left out (none is deployed).
fn variables_read(function_id: &str) -> BTreeSet<String> {
    declared(function_id)
        .into_iter()
        .filter(|s| s.prefix.is_none())
        .map(|s| s.name.to_owned())
        .collect()
}

#[test]
fn every_variable_the_functions_read_is_set_and_secrets_are_parameter_names() {
    let template = template();
    let mut union = BTreeSet::new();
    for extra in VARIANTS {
        let stack = stack(&template, extra);
        let layer = extra.iter().any(|(n, _)| *n == "WhisperModelLayerArn");
        for id in FUNCTIONS {
            let f = function(&stack, id);
            let set: BTreeSet<&str> = f.environment.keys().map(String::as_str).collect();
            assert_eq!(set, expected_environment(id, layer), "{id} with {extra:?}");
            union.extend(f.environment.keys().cloned());

            let code_uri = f.code_uri.as_deref().unwrap();
            for name in variables_read(id) {
                if LEFT_AT_DEFAULT.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let alternative = ONE_OF
                    .iter()
                    .find_map(|(a, b)| (*a == name).then_some(*b).or((*b == name).then_some(*a)));
                if alternative.is_some_and(|other| set.contains(other)) {
                    continue;
                }
                let param = format!("{name}_PARAM");
                assert!(
                    set.contains(name.as_str()) || set.contains(param.as_str()),
                    "{id} reads {name} (declared in {code_uri}/src/config.rs) but the template sets neither {name} nor {param}"
                );
            }
            for name in &set {
                if let Some(secret) = name.strip_suffix("_PARAM") {
                    assert!(
                        !set.contains(secret),
                        "{id}: {secret} is set as a plain value"
                    );
                    let value = &f.environment[*name];
                    assert!(
                        value.is_empty() || value.starts_with('/'),
                        "{id}: {name} should be an SSM parameter name, is {value:?}"
                    );
                }
            }
        }
    }
    // Every variable some function expects, with or without the model layer.
    let listed: BTreeSet<&str> = FUNCTIONS
        .iter()
        .flat_map(|id| [false, true].map(|layer| expected_environment(id, layer)))
        .flatten()
        .collect();
    let missing: Vec<_> = listed.iter().filter(|n| !union.contains(**n)).collect();
    assert!(missing.is_empty(), "never set: {missing:?}");
}

#[test]
fn no_secret_is_a_template_parameter() {
    let template = template();
    for (name, parameter) in &template.parameters {
        let secret_like = name.ends_with("Token")
            || [
                "Secret",
                "Password",
                "ApiKey",
                "AccessToken",
                "VerifyToken",
                "TagKey",
            ]
            .iter()
            .any(|w| name.contains(w));
        if secret_like {
            assert!(
                name.ends_with("ParameterName") || name.ends_with("Arn"),
                "{name} looks like a secret: take the name of an SSM SecureString parameter instead"
            );
            let default = parameter
                .default
                .as_ref()
                .and_then(|d| d.as_str())
                .unwrap_or("");
            assert!(default.is_empty() || default.starts_with('/') || default.starts_with("arn:"));
        }
    }
    let stack = stack(&template, &[]);
    assert_eq!(
        stack
            .parameter("VerifyTokenParameterName")
            .unwrap()
            .as_str(),
        Some("/remedios/whatsapp-verify-token")
    );
}

/// Whether `function_id`'s own configuration code accepts `env`.
fn config_accepts(function_id: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    config_debug(function_id, env).map(drop)
}

#[test]
fn every_number_parameter_a_function_reads_has_exactly_the_range_its_code_accepts() {
    let template = template();
    let stack = stack(&template, &[]);
    let mut checked = Vec::new();
    for id in FUNCTIONS {
        let base = base_environment(&stack, id);
        config_accepts(id, &base).unwrap_or_else(|e| panic!("{id}: the base environment: {e}"));
        let raw = &template.resources[id].properties["Environment"]["Variables"];
        let Some(raw) = raw.as_mapping() else {
            continue;
        };
        for (var, value) in raw {
            let (Some(var), Some(name)) = (var.as_str(), template.referenced_parameter(value))
            else {
                continue;
            };
            let parameter = &template.parameters[name];
            if !parameter.is_number() {
                continue;
            }
            let (Some(min), Some(max)) = (parameter.min_value, parameter.max_value) else {
                panic!("{name} ({id}'s {var}) has no MinValue and MaxValue");
            };
            let with = |v: f64| {
                let mut env = base.clone();
                env.insert(var.to_owned(), format!("{}", v as i64));
                config_accepts(id, &env)
            };
            for v in [min, max] {
                if let Err(e) = with(v) {
                    panic!("{id}: {var}={v} is allowed by {name} but the code refuses it: {e}");
                }
            }
            for v in [min - 1.0, max + 1.0] {
                assert!(
                    with(v).is_err(),
                    "{id}: {var}={v} is outside {name} ({min} to {max}) but the code takes it: \
                     the template and the code disagree on the range"
                );
            }
            checked.push(format!("{id}.{var}"));
        }
    }
    assert!(
        checked.iter().any(|c| c.ends_with("AUDIO_MAX_SECONDS")),
        "the check reached the parameters: {checked:?}"
    );
}

/// One row of the README's configuration table.
#[derive(Debug)]
struct ConfigRow {
    /// The variables it names (`NAME` and `NAME_PARAM` for a secret).
    names: Vec<String>,
    /// Whether the row is a secret's (`NAME` / `_PARAM`).
    secret: bool,
    used_by: Vec<&'static str>,
    /// The code's defaults, one per variable where the row gives a literal.
    defaults: Vec<Option<String>>,
    /// What the template sets, one per variable.
    deployed: Vec<String>,
}

/// Backticked spans of a cell.
fn literals(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn readme_rows() -> Vec<ConfigRow> {
    let readme =
        std::fs::read_to_string(paths::workspace_root().join("README.md")).expect("README.md");
    let header = "| Variable | Used by | Default | Deployed | Meaning |";
    let table = readme
        .split_once(header)
        .expect("the configuration table, with its Default and Deployed columns")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert!(cells.len() >= 5, "a row of five cells: {line}");
            let mut names = literals(cells[0]);
            let secret = names.len() == 2 && names[1] == "_PARAM";
            if secret {
                names[1] = format!("{}_PARAM", names[0]);
            }
            let used_by = match cells[1] {
                "all" => FUNCTIONS.to_vec(),
                used => FUNCTIONS
                    .into_iter()
                    .filter(|f| used.contains(&infra_function_name(f)))
                    .collect(),
            };
            assert!(!used_by.is_empty(), "no function uses {line}");
            let split = |cell: &str| -> Vec<String> {
                if names.len() == 2 && !secret {
                    cell.split(" / ").map(str::to_owned).collect()
                } else {
                    vec![cell.to_owned()]
                }
            };
            let defaults = split(cells[2])
                .iter()
                .map(|c| {
                    let lits = literals(c);
                    (c.starts_with('`') && lits.len() == 1).then(|| lits[0].clone())
                })
                .collect();
            ConfigRow {
                secret,
                used_by,
                defaults,
                deployed: split(cells[3]),
                names,
            }
        })
        .collect()
}

/// `WebhookFunction` → `webhook`.
fn infra_function_name(id: &str) -> String {
    id.trim_end_matches("Function").to_lowercase()
}

/// What the README's Deployed column must say for `var` of `function_id`, read from the
/// template with default parameters.
fn deployed_cell(template: &Template, stack: &Deployment<'_>, id: &str, var: &String) -> String {
    let raw = &template.resources[id].properties["Environment"]["Variables"];
    let Some(value) = function(stack, id).environment.get(var.as_str()).cloned() else {
        return "not set".into();
    };
    if let Some(name) = raw.get(var).and_then(|v| template.referenced_parameter(v))
        && template.parameters[name].default.is_none()
    {
        return format!("required (`{name}`)");
    }
    if value.contains("${") {
        "from the stack".into()
    } else if value.is_empty() {
        "empty".into()
    } else {
        format!("`{value}`")
    }
}

/// The configuration `function_id` builds from `env`, as its `Debug` text.
fn config_debug(function_id: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let env = remedios_shared::config::Env(
        env.clone()
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    );
    match function_id {
        WEBHOOK_FUNCTION => webhook::Config::from_env(&env).map(|c| format!("{c:?}")),
        TRANSCRIBER_FUNCTION => transcriber::Config::from_env(&env).map(|c| format!("{c:?}")),
        RESPONDER_FUNCTION => responder::Config::from_env(&env).map(|c| format!("{c:?}")),
        other => panic!("no configuration for {other}"),
    }
    .map_err(|e| e.to_string())
}

/// The README's table is the one list of what the functions read: every variable the
/// template sets is in it, its Deployed column is what the template sets with default
/// parameters, and each literal Default is the code's own (setting the variable to it
/// gives the configuration the function builds without it).
#[test]
fn the_readme_table_gives_the_code_default_and_the_deployed_value_of_every_variable() {
    let template = template();
    let stack = stack(&template, &[]);
    let rows = readme_rows();
    let mut listed: BTreeSet<(&str, String)> = BTreeSet::new();
    let mut defaults_checked = 0;
    for row in &rows {
        for id in &row.used_by {
            let base = base_environment(&stack, id);
            // A secret's Deployed value is its parameter's name: the `_PARAM` variable.
            let shown: Vec<&String> = if row.secret {
                vec![&row.names[1]]
            } else {
                row.names.iter().collect()
            };
            for (i, var) in shown.iter().enumerate() {
                let wanted = deployed_cell(&template, &stack, id, var);
                assert_eq!(
                    row.deployed.get(i).map(String::as_str),
                    Some(wanted.as_str()),
                    "README: the Deployed cell of {var} ({id}) must say what the template sets"
                );
            }
            listed.extend(row.names.iter().map(|var| (*id, var.clone())));
            for (var, default) in row.names.iter().zip(&row.defaults) {
                let Some(default) = default else { continue };
                if ["LOG_FORMAT", "RUST_LOG"].contains(&var.as_str()) {
                    // Read by telemetry::init, not the configuration (its tests cover it).
                    continue;
                }
                let mut unset = base.clone();
                unset.remove(var.as_str());
                if var == "WHISPER_MODEL_PATH" {
                    // The path is read only when no S3 key is given.
                    unset.remove("WHISPER_MODEL_S3_KEY");
                }
                let with = |value: String| {
                    let mut env = unset.clone();
                    env.insert(var.clone(), value);
                    config_debug(id, &env)
                };
                let without =
                    config_debug(id, &unset).unwrap_or_else(|e| panic!("{id} without {var}: {e}"));
                assert_eq!(
                    with(default.clone()),
                    Ok(without.clone()),
                    "README: the Default of {var} ({id}) is `{default}`, but the code's differs"
                );
                assert_ne!(
                    with(format!("{default}9x")),
                    Ok(without),
                    "{id} does not read {var}: the check above proves nothing"
                );
                defaults_checked += 1;
            }
        }
    }
    for id in FUNCTIONS {
        for var in function(&stack, id).environment.keys() {
            assert!(
                listed.contains(&(id, var.clone())),
                "{id} gets {var} from the template, and the README's table does not list it for {}",
                infra_function_name(id)
            );
        }
    }
    assert!(
        defaults_checked >= 15,
        "only {defaults_checked} literal defaults were checked"
    );
}

/// `remedios up` hands the functions every variable they declare: passed on from the
/// shell when it is the operator's, set by the stack itself when the deployment sets it,
/// or named as making no sense locally. A setting missing from all three would be
/// silently ignored (`HISTORY_MAX_CHARS=8000 remedios up` once was).
#[test]
fn every_declared_variable_reaches_the_functions_under_remedios_up() {
    use remedios_local::stack::{NOT_LOCAL, Options, SET_BY_STACK, function_settings, passes};
    let settings = function_settings();
    for s in &settings {
        let name = match s.prefix {
            Some(prefix) => format!("{prefix}RESET_DONE_ES"),
            None => s.name.to_owned(),
        };
        match s.origin {
            Origin::Operator | Origin::Secret if NOT_LOCAL.contains(&s.name) => {
                assert!(
                    !passes(&name),
                    "{name} makes no sense locally, yet is passed on"
                )
            }
            Origin::Operator | Origin::Secret => {
                let given = [(name.clone(), "a value".to_owned())];
                assert_eq!(
                    Options::passed(given.clone()),
                    BTreeMap::from(given),
                    "`{name}=... remedios up` must reach the functions"
                );
            }
            Origin::Deployment => assert!(
                SET_BY_STACK.contains(&s.name) || s.name == "AWS_ENDPOINT_URL_S3",
                "{name} is set by the deployment, and the local stack does not set it"
            ),
        }
    }
    for set in SET_BY_STACK {
        assert!(
            !passes(set),
            "{set} is the stack's own: the shell must not override it"
        );
    }
    assert!(!passes("HOME") && !passes("AWS_ACCESS_KEY_ID"));
    assert!(settings.len() > 50, "declared: {}", settings.len());
}

/// The README's configuration table and the declarations are the same list: every row
/// is a declared variable and every declared variable has a row, with the declared
/// default where the row gives a literal one.
#[test]
fn the_readme_table_lists_exactly_the_declared_variables_with_their_defaults() {
    let mut by_name: BTreeMap<String, (Setting, BTreeSet<&str>)> = BTreeMap::new();
    for id in FUNCTIONS {
        for s in declared(id) {
            by_name
                .entry(s.name.to_owned())
                .or_insert_with(|| (s.clone(), BTreeSet::new()))
                .1
                .insert(id);
        }
    }
    let mut documented = BTreeSet::new();
    for row in readme_rows() {
        for (i, name) in row.names.iter().enumerate() {
            if row.secret && i == 1 {
                continue;
            }
            let (setting, readers) = by_name
                .get(name)
                .unwrap_or_else(|| panic!("README documents {name}, which no function declares"));
            for id in &row.used_by {
                assert!(readers.contains(id), "README: {id} does not read {name}");
            }
            if let (Some(Some(readme)), Some(code)) = (row.defaults.get(i), &setting.default) {
                let same = readme == code
                    || readme.parse::<f64>().ok() == code.parse::<f64>().ok()
                        && readme.parse::<f64>().is_ok()
                    || flag(readme).is_some() && flag(readme) == flag(code);
                assert!(
                    same,
                    "README: {name}'s default is `{readme}`, declared `{code}`"
                );
            }
            documented.insert(name.clone());
        }
    }
    let undocumented: Vec<&String> = by_name
        .keys()
        .filter(|n| !documented.contains(*n) && !EMULATOR_ONLY.contains(&n.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "declared but not in the README's table: {undocumented:?}"
    );
}

/// Settings only emulators use, which the README's table leaves to the development notes.
const EMULATOR_ONLY: [&str; 3] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "S3_FORCE_PATH_STYLE",
];

/// A flag's value in any of its spellings.
fn flag(text: &str) -> Option<bool> {
    match text {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Lambda refuses a function whose environment variables, names and values together,
/// exceed 4 KB.
const LAMBDA_ENVIRONMENT_BYTES: usize = 4096;
/// What a resource's `Ref` or attribute can grow to in a value: an SQS queue URL
/// (`https://sqs.<region>.amazonaws.com/<account>/<a name of up to 80>`) or a bucket
/// name, with room to spare.
const RESOURCE_VALUE_BYTES: usize = 160;
/// The longest stack name CloudFormation accepts.
const LONGEST_STACK_NAME: usize = 128;

/// Each parameter at the longest value it accepts: the longest allowed value, `MaxLength`
/// characters, or the digits of `MaxValue`. One with no bound gets more than Lambda's
/// whole budget, so a test that sums it names it.
fn longest_parameters(template: &Template) -> DeploymentSettings {
    let mut settings = settings(&[]);
    settings.stack_name = "s".repeat(LONGEST_STACK_NAME);
    for (name, parameter) in &template.parameters {
        let value = if let Some(allowed) = &parameter.allowed_values {
            allowed
                .iter()
                .filter_map(|v| infra::eval::scalar_string(v).ok())
                .max_by_key(String::len)
                .unwrap_or_default()
        } else if parameter.is_number() {
            match parameter.max_value {
                Some(max) => format!("{max}"),
                None => "9".repeat(LAMBDA_ENVIRONMENT_BYTES + 1),
            }
        } else {
            "x".repeat(parameter.max_length.unwrap_or(LAMBDA_ENVIRONMENT_BYTES + 1))
        };
        settings = settings.with(name, value);
    }
    settings
}

/// How many bytes `value` can take once deployed: resource placeholders (`${Queue}`)
/// count as [`RESOURCE_VALUE_BYTES`].
fn deployed_bytes(value: &str) -> usize {
    let mut bytes = 0;
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        bytes += start;
        match rest[start..].find('}') {
            Some(end) => {
                bytes += RESOURCE_VALUE_BYTES;
                rest = &rest[start + end + 1..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    bytes + rest.len()
}

#[test]
fn every_functions_environment_fits_lambdas_4_kb_with_every_parameter_at_its_longest() {
    let template = template();
    let stack = template
        .deployment(longest_parameters(&template))
        .expect("the longest values are accepted");
    let mut over = Vec::new();
    for id in FUNCTIONS {
        let environment = function(&stack, id).environment;
        let mut sizes: Vec<(usize, &String)> = environment
            .iter()
            .map(|(name, value)| (name.len() + deployed_bytes(value), name))
            .collect();
        sizes.sort_by(|a, b| b.cmp(a));
        let total: usize = sizes.iter().map(|(bytes, _)| bytes).sum();
        println!(
            "{id}: at most {total} of {LAMBDA_ENVIRONMENT_BYTES} bytes; largest {:?}",
            &sizes[..3.min(sizes.len())]
        );
        if total > LAMBDA_ENVIRONMENT_BYTES {
            let largest: Vec<_> = sizes.iter().filter(|(bytes, _)| *bytes > 256).collect();
            over.push(format!("{id} can reach {total} bytes: {largest:?}"));
        }
    }
    assert!(
        over.is_empty(),
        "over Lambda's {LAMBDA_ENVIRONMENT_BYTES} bytes of environment (bound the parameters \
         behind the largest variables with MaxLength or AllowedValues): {over:#?}"
    );
}

#[test]
fn lambda_filters_logs_at_the_level_the_code_reads() {
    let template = template();
    for level in ["trace", "debug", "info", "warn", "error"] {
        let stack = stack(&template, &[("LogLevel", level)]);
        for id in FUNCTIONS {
            let f = function(&stack, id);
            assert_eq!(f.logging.log_format.as_deref(), Some("JSON"), "{id}");
            let lambda_level = f.logging.application_log_level.unwrap_or_else(|| {
                panic!("{id} has no ApplicationLogLevel: Lambda filters JSON logs at INFO")
            });
            assert_eq!(lambda_level, level.to_uppercase(), "{id}");
            // What the code reads first, as Lambda exports it, gives the same filter.
            let read = remedios_shared::telemetry::LogSettings::from_vars(|name| match name {
                "AWS_LAMBDA_LOG_LEVEL" => Some(lambda_level.clone()),
                _ => f.environment.get(name).cloned(),
            });
            assert_eq!(read.filter, level, "{id}");
        }
    }
    assert!(
        template
            .deployment(settings(&[("LogLevel", "responder=debug")]))
            .is_err(),
        "a filter Lambda cannot apply is refused at deploy time"
    );
}
