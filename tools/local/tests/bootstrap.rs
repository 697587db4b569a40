//! What `remedios up` installs (`scripts/bootstrap.sh --run`) against what the tests need
//! (`scripts/bootstrap.sh`), read from the script's own plan (`REMEDIOS_BOOTSTRAP_PLAN=1`:
//! it says what it would install and installs nothing).

use std::process::Command;

fn plan(args: &[&str], gpt4all_url: Option<&str>) -> String {
    let script = remedios_emulators::paths::workspace_root().join("scripts/bootstrap.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .args(args)
        .env("REMEDIOS_BOOTSTRAP_PLAN", "1")
        .env_remove("GPT4ALL_URL");
    if let Some(url) = gpt4all_url {
        command.env("GPT4ALL_URL", url);
    }
    let out = command.output().expect("bash runs the script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn line<'a>(plan: &'a str, what: &str) -> &'a str {
    plan.lines()
        .find_map(|l| l.strip_prefix(&format!("{what}: ")))
        .unwrap_or_else(|| panic!("no {what} line in {plan}"))
}

#[test]
fn up_with_its_own_gpt4all_host_never_builds_llama_cpp() {
    let own_host = plan(&["--run"], Some("http://192.168.1.20:4891/v1"));
    let pip = line(&own_host, "pip");
    assert!(pip.ends_with("requirements-run.txt"), "{pip}");
    assert!(
        !pip.contains("requirements-model.txt"),
        "no llama.cpp: {pip}"
    );
    let apt = line(&own_host, "apt");
    for test_tool in ["espeak-ng", "sox", "opus-tools", "ffmpeg"] {
        assert!(
            !apt.split(' ').any(|p| p == test_tool),
            "{test_tool} is for tests: {apt}"
        );
    }
    assert_eq!(line(&own_host, "cargo-nextest"), "no");

    let local_model = plan(&["--run"], None);
    assert!(line(&local_model, "pip").contains("requirements-model.txt"));

    let tests = plan(&[], Some("http://192.168.1.20:4891/v1"));
    assert!(
        line(&tests, "pip").ends_with("requirements-dev.txt"),
        "the tests get everything"
    );
    assert!(line(&tests, "apt").contains("espeak-ng"));
    assert_eq!(line(&tests, "cargo-nextest"), "yes");
    let dev = std::fs::read_to_string(
        remedios_emulators::paths::workspace_root().join("scripts/requirements-dev.txt"),
    )
    .expect("requirements-dev.txt");
    assert!(
        dev.contains("-r requirements-run.txt") && dev.contains("-r requirements-model.txt"),
        "the test requirements include the running ones: {dev}"
    );
}
