//! `remedios deploy`: its SSM and S3 steps against moto, its subscription against the
//! Graph API emulator, the command lines it would run, and what it says when a tool or
//! the credentials are missing (the real binary, in a bare environment).

use std::collections::BTreeMap;
use std::process::Command;

use remedios_emulators::graph::Recorded;
use remedios_local::deploy::{self, Action, DeployError, SecretPolicy, Uploaded};
use remedios_local::samconfig::StackConfig;
use remedios_shared::store::Store;
use remedios_testkit::graph::GraphEmulator;
use remedios_testkit::moto::{self, Moto};

fn parameters() -> BTreeMap<String, String> {
    remedios_template::local_resources("remedios")
        .expect("the template")
        .secret_parameters
}

/// The stack `remedios` as the template reads it with `pairs` as its parameters.
fn with(pairs: &[(&str, &str)]) -> remedios_template::LocalResources {
    let parameters: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    remedios_template::local_resources_with("remedios", &parameters).expect("the template")
}

async fn secret(ssm: &aws_sdk_ssm::Client, name: &str) -> String {
    ssm.get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .expect("the parameter exists")
        .parameter()
        .and_then(|p| p.value().map(str::to_owned))
        .expect("a value")
}

#[tokio::test]
async fn secrets_are_created_generated_kept_and_updated_as_secure_strings() {
    let moto = Moto::start().await.expect("moto");
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let parameters = parameters();
    assert!(
        parameters.contains_key("WHATSAPP_ACCESS_TOKEN")
            && parameters.contains_key("WHATSAPP_VERIFY_TOKEN"),
        "{parameters:?}"
    );
    let given = |var: &str| match var {
        "WHATSAPP_ACCESS_TOKEN" => Some("EAAG-first-token".to_owned()),
        "WHATSAPP_APP_SECRET" => Some("app-secret-from-meta".to_owned()),
        _ => None,
    };
    let never = |_: &str| None;

    let dry = deploy::ensure_secrets(&ssm, &parameters, &given, &never, &dry())
        .await
        .expect("a dry run");
    assert!(
        dry.iter().all(|a| matches!(a.action, Action::Would(_))),
        "{dry:?}"
    );
    let listed = ssm.describe_parameters().send().await.expect("describe");
    assert!(listed.parameters().is_empty(), "a dry run writes nothing");

    let first = deploy::ensure_secrets(&ssm, &parameters, &given, &never, &write())
        .await
        .expect("created");
    let action = |actions: &[deploy::SecretAction], var: &str| {
        actions
            .iter()
            .find(|a| a.var == var)
            .map(|a| a.action)
            .unwrap_or_else(|| panic!("{var} in {actions:?}"))
    };
    assert_eq!(action(&first, "WHATSAPP_ACCESS_TOKEN"), Action::Created);
    assert_eq!(action(&first, "WHATSAPP_VERIFY_TOKEN"), Action::Generated);
    let token_param = &parameters["WHATSAPP_ACCESS_TOKEN"];
    assert_eq!(secret(&ssm, token_param).await, "EAAG-first-token");
    let verify = secret(&ssm, &parameters["WHATSAPP_VERIFY_TOKEN"]).await;
    assert_eq!(verify.len(), 64, "a random verify token");
    let described = ssm.describe_parameters().send().await.expect("describe");
    assert!(
        described
            .parameters()
            .iter()
            .all(|p| p.r#type() == Some(&aws_sdk_ssm::types::ParameterType::SecureString)),
        "{described:?}"
    );
    for a in &first {
        let shown = a.to_string();
        assert!(
            !shown.contains("EAAG-first-token") && !shown.contains(&verify),
            "no value is ever shown: {shown}"
        );
    }

    // Again with nothing given, or the same values: everything is kept.
    let nothing = |_: &str| None;
    let again = deploy::ensure_secrets(&ssm, &parameters, &nothing, &never, &write())
        .await
        .expect("kept");
    assert!(again.iter().all(|a| a.action == Action::Kept), "{again:?}");
    assert_eq!(
        secret(&ssm, &parameters["WHATSAPP_VERIFY_TOKEN"]).await,
        verify
    );
    let same = deploy::ensure_secrets(&ssm, &parameters, &given, &never, &write())
        .await
        .expect("kept");
    assert!(same.iter().all(|a| a.action == Action::Kept), "{same:?}");

    // A different value in the shell (a test app's, say) never replaces a stored secret
    // by surprise: it is reported, without either value, and kept.
    let new_token = |var: &str| (var == "WHATSAPP_ACCESS_TOKEN").then(|| "EAAG-second".to_owned());
    let differs = deploy::ensure_secrets(&ssm, &parameters, &new_token, &never, &write())
        .await
        .expect("kept");
    assert_eq!(action(&differs, "WHATSAPP_ACCESS_TOKEN"), Action::Differs);
    let said = differs
        .iter()
        .find(|a| a.var == "WHATSAPP_ACCESS_TOKEN")
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(said.contains("--replace WHATSAPP_ACCESS_TOKEN"), "{said}");
    assert!(!said.contains("EAAG"), "no value is shown: {said}");
    assert_eq!(secret(&ssm, token_param).await, "EAAG-first-token");

    // With --replace it is replaced.
    let replace = SecretPolicy {
        dry_run: false,
        replace: vec!["WHATSAPP_ACCESS_TOKEN".into()],
    };
    let updated = deploy::ensure_secrets(&ssm, &parameters, &new_token, &never, &replace)
        .await
        .expect("updated");
    assert_eq!(action(&updated, "WHATSAPP_ACCESS_TOKEN"), Action::Updated);
    assert_eq!(secret(&ssm, token_param).await, "EAAG-second");
}

fn dry() -> SecretPolicy {
    SecretPolicy {
        dry_run: true,
        replace: Vec::new(),
    }
}

fn write() -> SecretPolicy {
    SecretPolicy::default()
}

#[tokio::test]
async fn a_too_short_tag_key_is_refused_before_anything_is_written() {
    let moto = Moto::start().await.expect("moto");
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let given = |var: &str| match var {
        "WHATSAPP_ACCESS_TOKEN" => Some("EAAG-token".to_owned()),
        "WHATSAPP_APP_SECRET" => Some("app-secret".to_owned()),
        "USER_TAG_KEY" => Some("short-key".to_owned()),
        _ => None,
    };
    let never = |_: &str| None;
    let err = deploy::ensure_secrets(&ssm, &parameters(), &given, &never, &write())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("USER_TAG_KEY is shorter than 32"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("short-key"),
        "the value is not shown: {err}"
    );
    let listed = ssm.describe_parameters().send().await.expect("describe");
    assert!(listed.parameters().is_empty(), "nothing was written");
}

#[tokio::test]
async fn a_replaced_secret_keeps_its_customer_managed_key() {
    let moto = Moto::start().await.expect("moto");
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let key = "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666";
    let parameters = parameters();
    let token_param = &parameters["WHATSAPP_ACCESS_TOKEN"];
    ssm.put_parameter()
        .name(token_param)
        .value("EAAG-old")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .key_id(key)
        .send()
        .await
        .expect("stored with the operator's key");
    let given = |var: &str| match var {
        "WHATSAPP_ACCESS_TOKEN" => Some("EAAG-new".to_owned()),
        "WHATSAPP_APP_SECRET" => Some("app-secret".to_owned()),
        _ => None,
    };
    let never = |_: &str| None;
    let replace = SecretPolicy {
        dry_run: false,
        replace: vec!["WHATSAPP_ACCESS_TOKEN".into()],
    };
    deploy::ensure_secrets(&ssm, &parameters, &given, &never, &replace)
        .await
        .expect("replaced");
    assert_eq!(secret(&ssm, token_param).await, "EAAG-new");
    let described = ssm.describe_parameters().send().await.expect("describe");
    let stored = described
        .parameters()
        .iter()
        .find(|p| p.name() == Some(token_param.as_str()))
        .expect("the token's parameter");
    assert!(
        stored.key_id().is_some_and(|k| k.contains(key)),
        "still the customer-managed key: {:?}",
        stored.key_id()
    );
    let app_secret = described
        .parameters()
        .iter()
        .find(|p| p.name() == Some(parameters["WHATSAPP_APP_SECRET"].as_str()))
        .expect("the app secret's parameter");
    assert_ne!(
        app_secret.key_id().map(|k| k.contains(key)),
        Some(true),
        "a new parameter gets SSM's own key"
    );
}

#[tokio::test]
async fn a_secret_that_cannot_be_asked_for_names_its_variable() {
    let moto = Moto::start().await.expect("moto");
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config().await);
    let nothing = |_: &str| None;
    let err = deploy::ensure_secrets(&ssm, &parameters(), &nothing, &nothing, &write())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Missing(m) if m.contains("set WHATSAPP_")),
        "{err}"
    );
}

#[tokio::test]
async fn the_model_is_uploaded_once() {
    let moto = Moto::start().await.expect("moto");
    let s3 = moto::s3_client(&moto.sdk_config().await);
    moto::create_bucket(&s3, "remedios-deploy-test")
        .await
        .expect("bucket");
    let store = Store::new(s3, "remedios-deploy-test");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("ggml-test.bin");
    std::fs::write(&model, vec![7u8; 3 * 1024 * 1024]).expect("a model file");
    let key = "models/ggml-test.bin";

    assert_eq!(
        deploy::upload_model(&store, &model, key, true)
            .await
            .expect("dry"),
        Uploaded::Would {
            bytes: 3 * 1024 * 1024
        }
    );
    assert!(
        store.get(key).await.expect("S3").is_none(),
        "a dry run uploads nothing"
    );
    assert_eq!(
        deploy::upload_model(&store, &model, key, false)
            .await
            .expect("upload"),
        Uploaded::Uploaded {
            bytes: 3 * 1024 * 1024
        }
    );
    let stored = store.get(key).await.expect("S3").expect("uploaded");
    assert_eq!(stored.bytes.len(), 3 * 1024 * 1024);
    assert_eq!(
        deploy::upload_model(&store, &model, key, false)
            .await
            .expect("again"),
        Uploaded::Unchanged {
            bytes: 3 * 1024 * 1024
        }
    );
    let missing = deploy::upload_model(&store, &dir.path().join("nope.bin"), key, false)
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot read the whisper model"),
        "{missing}"
    );
}

#[tokio::test]
async fn subscribe_posts_to_the_accounts_subscribed_apps_with_the_token() {
    let graph = GraphEmulator::start("EAAG-deploy").await.expect("emulator");
    deploy::subscribe(&graph.base_url(), "v24.0", "102290129340398", "EAAG-deploy")
        .await
        .expect("subscribed");
    let subscribed: Vec<_> = graph
        .recorded()
        .into_iter()
        .filter_map(|r| match r {
            Recorded::Subscribed { waba_id, .. } => Some(waba_id),
            _ => None,
        })
        .collect();
    assert_eq!(subscribed, ["102290129340398"]);
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v24.0/102290129340398/subscribed_apps",
            graph.base_url()
        ))
        .bearer_auth("EAAG-deploy")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");

    let wrong_token = deploy::subscribe(&graph.base_url(), "v24.0", "102290129340398", "nope")
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong_token, DeployError::Graph { status: 401, body } if body.contains("190")),
        "{wrong_token}"
    );
    let not_an_account = deploy::subscribe(&graph.base_url(), "v24.0", "my-waba", "EAAG-deploy")
        .await
        .unwrap_err();
    assert!(
        not_an_account.to_string().contains("does not exist"),
        "{not_an_account}"
    );
}

#[test]
fn the_first_deploy_is_guided_and_later_ones_use_the_saved_answers() {
    let root = std::path::Path::new("/src/remedios");
    let template = remedios_template::Template::load(&remedios_template::template_path())
        .expect("the template");
    let fresh = "version = 0.1\n[default.global.parameters]\nstack_name = \"remedios\"\n[default.deploy.parameters]\ncapabilities = \"CAPABILITY_IAM\"\n";

    // The default stack: guided, with the template's own secret names.
    let production = StackConfig::read(fresh, "remedios").expect("samconfig");
    assert_eq!(production.env, "default");
    let parameters = deploy::stack_parameters(&template, &production);
    assert!(parameters.is_empty(), "{parameters:?}");
    assert_eq!(
        deploy::commands(root, &production, &parameters, "eu-west-1"),
        [
            vec!["/src/remedios/infra/build.sh".to_owned()],
            [
                "sam",
                "deploy",
                "--stack-name",
                "remedios",
                "--config-env",
                "default",
                "--region",
                "eu-west-1",
                "--guided"
            ]
            .map(str::to_owned)
            .to_vec()
        ]
    );

    // Another stack gets its own config environment and its own secrets.
    let staging = StackConfig::read(fresh, "staging").expect("samconfig");
    assert_eq!(staging.env, "staging");
    let parameters = deploy::stack_parameters(&template, &staging);
    assert_eq!(
        parameters.get("AppSecretParameterName").map(String::as_str),
        Some("/staging/whatsapp-app-secret")
    );
    assert!(
        parameters.values().all(|v| v.starts_with("/staging/")),
        "{parameters:?}"
    );
    let line = &deploy::commands(root, &staging, &parameters, "eu-west-1")[1];
    assert!(line.contains(&"--guided".to_owned()), "{line:?}");
    assert!(
        line.contains(&"UserTagKeyParameterName=/staging/user-tag-key".to_owned()),
        "{line:?}"
    );
    let resources =
        remedios_template::local_resources_with("staging", &parameters).expect("resources");
    assert_eq!(
        resources.secret_parameters["WHATSAPP_APP_SECRET"],
        "/staging/whatsapp-app-secret"
    );
    assert_ne!(
        resources.secret_parameters,
        remedios_template::local_resources("remedios")
            .expect("resources")
            .secret_parameters,
        "two stacks never share a secret"
    );

    // Once saved, the answers (and the region) are the stack's own, and SAM asks nothing.
    let saved = format!(
        "{fresh}\n[staging.deploy.parameters]\nregion = \"eu-central-1\"\nparameter_overrides = \"Gpt4AllBaseUrl=\\\"https://llm.example.com/v1\\\" AppSecretParameterName=\\\"/shop/app-secret\\\" WhisperModelS3Key=models/small.bin\"\n"
    );
    let staging = StackConfig::read(&saved, "staging").expect("samconfig");
    assert_eq!(staging.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        staging.overrides["Gpt4AllBaseUrl"],
        "https://llm.example.com/v1"
    );
    let parameters = deploy::stack_parameters(&template, &staging);
    assert_eq!(parameters["AppSecretParameterName"], "/shop/app-secret");
    assert_eq!(parameters["WhisperModelS3Key"], "models/small.bin");
    assert_eq!(
        deploy::commands(root, &staging, &parameters, "eu-central-1")[1],
        [
            "sam",
            "deploy",
            "--stack-name",
            "staging",
            "--config-env",
            "staging",
            "--region",
            "eu-central-1"
        ]
        .map(str::to_owned)
    );
    // Production's saved answers are untouched by staging's.
    assert!(
        !StackConfig::read(&saved, "remedios")
            .expect("samconfig")
            .saved()
    );
    let unclosed = "[default.deploy.parameters]\nparameter_overrides = \"A=\\\"open\"\n";
    let err = StackConfig::read(unclosed, "remedios").unwrap_err();
    assert!(err.to_string().contains("no closing quote"), "{err}");

    let outputs = deploy::parse_outputs(
        r#"[{"OutputKey":"BucketName","OutputValue":"shop-bucket-1"},{"OutputKey":"WebhookUrl","OutputValue":"https://x.execute-api.eu-west-1.amazonaws.com/webhook"}]"#,
    )
    .expect("outputs");
    assert_eq!(outputs["BucketName"], "shop-bucket-1");
}

#[test]
fn a_dry_run_without_tools_or_credentials_says_what_is_missing_and_how_to_get_it() {
    let home = tempfile::tempdir().expect("an empty home");
    let out = Command::new(env!("CARGO_BIN_EXE_remedios"))
        .args(["deploy", "--dry-run"])
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", home.path())
        .env("REMEDIOS_VENV", home.path().join("no-venv"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the remedios binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("MISSING sam"), "{stdout}");
    assert!(stdout.contains("pip install aws-sam-cli"), "{stdout}");
    assert!(stdout.contains("MISSING cargo-lambda"), "{stdout}");
    assert!(stdout.contains("MISSING AWS credentials"), "{stdout}");
    assert!(stdout.contains("aws configure"), "{stdout}");
    assert!(
        stderr.contains("cannot deploy without: sam, cargo-lambda, AWS credentials"),
        "{stderr}"
    );
}

#[tokio::test]
async fn against_the_emulators_it_creates_the_secrets_and_uploads_the_model() {
    let moto = Moto::start().await.expect("moto");
    let sdk = moto.sdk_config().await;
    let s3 = moto::s3_client(&sdk);
    moto::create_bucket(&s3, "remedios-cli-test")
        .await
        .expect("bucket");
    let graph = GraphEmulator::start("EAAG-cli").await.expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("ggml-tiny.bin");
    std::fs::write(&model, vec![1u8; 1024 * 1024]).expect("a model");
    // Awaited, not blocking: the Graph API emulator serves from this test's runtime.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_remedios"))
        .args(["deploy", "--skip-deploy", "--bucket", "remedios-cli-test"])
        .args(["--endpoint-url", moto.endpoint()])
        .arg("--model")
        .arg(&model)
        .args(["--subscribe", "102290129340398", "--graph-url"])
        .arg(graph.base_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("WHATSAPP_ACCESS_TOKEN", "EAAG-cli")
        .env("WHATSAPP_APP_SECRET", "app-secret-from-meta")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the remedios binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("EAAG-cli") && !stdout.contains("app-secret-from-meta"),
        "{stdout}"
    );
    assert!(stdout.contains("created with a random value"), "{stdout}");
    assert!(
        stdout.contains("Lambda account: 1000 concurrent executions (1000 unreserved)"),
        "the account's settings are read: {stdout}"
    );
    assert!(stdout.contains("uploaded"), "{stdout}");
    assert!(
        stdout.contains("Verify token: "),
        "the token Meta's dashboard needs: {stdout}"
    );
    let store = Store::new(s3, "remedios-cli-test");
    assert_eq!(
        store
            .get("models/ggml-base-q8_0.bin")
            .await
            .expect("S3")
            .expect("the model")
            .bytes
            .len(),
        1024 * 1024
    );
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    assert_eq!(
        secret(&ssm, &parameters()["WHATSAPP_ACCESS_TOKEN"]).await,
        "EAAG-cli"
    );
    assert!(graph.recorded().iter().any(
        |r| matches!(r, Recorded::Subscribed { waba_id, .. } if waba_id == "102290129340398")
    ));
}

/// A new account's Lambda settings, read as GetAccountSettings answers them, against the
/// stack's parameters: the defaults fit an account of 10 concurrent executions; a
/// transcriber allowed 20 instances, or more memory than new accounts get, is warned of.
#[tokio::test]
async fn the_accounts_lambda_limits_are_read_and_what_exceeds_them_is_warned_of() {
    let moto = Moto::start_with_lambda_concurrency(10).await.expect("moto");
    let limits = deploy::account_limits(&moto.sdk_config().await)
        .await
        .expect("GetAccountSettings");
    assert_eq!(
        limits,
        deploy::AccountLimits {
            concurrent_executions: 10,
            unreserved: 10
        }
    );

    assert_eq!(
        deploy::account_warnings(&with(&[]), limits),
        Vec::<String>::new(),
        "the template's defaults (5 + 2 + the webhook) fit a new account"
    );
    let busy = deploy::account_warnings(&with(&[("TranscriberMaxConcurrency", "20")]), limits);
    assert_eq!(busy.len(), 1, "{busy:?}");
    assert!(busy[0].contains("may run 23 functions at once"), "{busy:?}");
    assert!(
        busy[0].contains("TranscriberMaxConcurrency to 7"),
        "{busy:?}"
    );
    let big = deploy::account_warnings(&with(&[("TranscriberMemorySize", "4096")]), limits);
    assert_eq!(big.len(), 1, "{big:?}");
    assert!(
        big[0].starts_with("TranscriberMemorySize is 4096 MB") && big[0].contains("3008 MB"),
        "{big:?}"
    );

    // An account whose quota was raised takes the busy stack.
    let raised = deploy::account_warnings(
        &with(&[("TranscriberMaxConcurrency", "20")]),
        deploy::AccountLimits {
            concurrent_executions: 1000,
            unreserved: 1000,
        },
    );
    assert!(raised.is_empty(), "{raised:?}");
}

/// The stack's model hosts, as the template wires them with its parameters: the
/// responder's own reading of `Gpt4AllBaseUrl` and `ModelHosts`; a warning when the
/// responder may ask more at once than they serve; and `--check`'s probe of each host
/// (the real SmolLM2 server behind the GPT4All gate, a model it does not have, a port
/// nothing listens on).
#[tokio::test]
async fn the_model_hosts_are_read_from_the_stack_checked_against_its_concurrency_and_probed() {
    let llm = remedios_testkit::model_server::LlmServer::start()
        .await
        .expect("the model server (run scripts/bootstrap.sh)");
    let gate = remedios_testkit::model_server::Gpt4AllGate::start(&llm.base_url())
        .await
        .expect("the gate");
    let dead = format!(
        "http://127.0.0.1:{}/v1",
        remedios_emulators::ports::free_port().expect("a port")
    );
    let model = llm.model().to_owned();
    let more = format!(
        "{dead}, concurrency=2, kind=llamacpp, key=/remedios/model-hosts/b; {}, model=Llama 3 8B",
        gate.base_url()
    );
    let resources = with(&[
        ("Gpt4AllBaseUrl", &gate.base_url()),
        ("Gpt4AllModel", &model),
        ("ModelHosts", &more),
        ("ResponderMaxConcurrency", "6"),
    ]);
    let hosts = deploy::model_hosts(&resources).expect("the responder reads them");
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[1].0.base_url.as_str(), dead);
    assert_eq!(
        hosts[1].1,
        Some(remedios_shared::secrets::SecretSource::SsmParameter(
            "/remedios/model-hosts/b".into()
        ))
    );
    let warning = deploy::concurrency_warning(&resources, &hosts).expect("6 over 4");
    assert!(
        warning.contains("ResponderMaxConcurrency is 6")
            && warning.contains("serve 4 request(s)")
            && warning.contains("lower ResponderMaxConcurrency to 4"),
        "{warning}"
    );
    let fits = with(&[
        ("Gpt4AllBaseUrl", &gate.base_url()),
        ("Gpt4AllConcurrency", "6"),
        ("ResponderMaxConcurrency", "6"),
    ]);
    let one = deploy::model_hosts(&fits).expect("one host");
    assert_eq!(one.len(), 1);
    assert_eq!(deploy::concurrency_warning(&fits, &one), None);
    let defaults = with(&[("Gpt4AllBaseUrl", &gate.base_url())]);
    assert_eq!(
        deploy::concurrency_warning(&defaults, &deploy::model_hosts(&defaults).unwrap()),
        None,
        "one GPT4All and the 2 SQS needs at least"
    );

    let health: Vec<deploy::HostHealth> = futures::future::join_all(
        hosts
            .iter()
            .map(|(settings, _)| deploy::probe_host(settings, None)),
    )
    .await;
    assert_eq!(
        health[0],
        deploy::HostHealth::Ready {
            model: model.clone()
        }
    );
    assert!(
        matches!(&health[1], deploy::HostHealth::Unreachable(_)),
        "{:?}",
        health[1]
    );
    assert_eq!(
        health[2],
        deploy::HostHealth::ModelMissing {
            model: "Llama 3 8B".into(),
            listed: vec![model]
        }
    );
    assert!(health[2].to_string().contains("MODEL MISSING"));
}
