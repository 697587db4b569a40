//! What `remedios up` installs (`scripts/bootstrap.sh --run`) against what the tests need
//! (`scripts/bootstrap.sh`), read from the script's own plan (`REMEDIOS_BOOTSTRAP_PLAN=1`:
//! it says what it would install and installs nothing).

use std::process::Command;

fn planned(args: &[&str], gpt4all_url: Option<&str>) -> String {
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
    let own_host = planned(&["--run"], Some("http://192.168.1.20:4891/v1"));
    let pip = line(&own_host, "pip");
    assert!(pip.ends_with("requirements-run.lock"), "{pip}");
    assert!(
        !pip.contains("requirements-model.lock"),
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

    let local_model = planned(&["--run"], None);
    assert!(line(&local_model, "pip").contains("requirements-model.lock"));

    let tests = planned(&[], Some("http://192.168.1.20:4891/v1"));
    assert!(
        line(&tests, "pip").ends_with("requirements-dev.lock"),
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

/// `name==version` of every package in a requirements or lock file, names normalised
/// (lower case, `-` for `_` and `.`), without environment markers.
fn pins(file: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(
        remedios_emulators::paths::workspace_root()
            .join("scripts")
            .join(file),
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut pins: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some((name, rest)) = line.split_once("==") else {
            continue;
        };
        let name = name
            .split('[')
            .next()
            .unwrap_or_default()
            .trim()
            .to_lowercase()
            .replace(['_', '.'], "-");
        let version = rest
            .split([' ', ';', '\\'])
            .next()
            .unwrap_or_default()
            .to_owned();
        pins.entry(name).or_default().push(version);
    }
    pins
}

#[test]
fn the_python_locks_hold_what_the_requirements_ask_for_with_hashes() {
    for (input, lock) in [
        ("requirements-run.txt", "requirements-run.lock"),
        ("requirements-model.txt", "requirements-model.lock"),
        ("requirements-dev.txt", "requirements-dev.lock"),
    ] {
        let locked = pins(lock);
        for (name, versions) in pins(input) {
            assert_eq!(
                locked.get(&name),
                Some(&versions),
                "{input} asks for {name}=={versions:?}, {lock} holds {:?}: run scripts/lock-python.sh",
                locked.get(&name)
            );
        }
        let text = std::fs::read_to_string(
            remedios_emulators::paths::workspace_root()
                .join("scripts")
                .join(lock),
        )
        .expect("the lock");
        // A package's line, then its hashes on the lines below, up to the next package.
        let (mut packages, mut hashed, mut this_hashed) = (0, 0, false);
        for line in text.lines() {
            if line.contains("==") && !line.starts_with([' ', '#']) {
                hashed += usize::from(this_hashed);
                packages += 1;
                this_hashed = false;
            }
            this_hashed |= line.trim_start().starts_with("--hash=sha256:");
        }
        hashed += usize::from(this_hashed);
        assert!(packages > 10, "{lock} holds {packages} packages");
        assert_eq!(hashed, packages, "every package of {lock} has its hashes");
    }
    // What `bootstrap.sh --run` installs is what the tests ran with.
    let dev = pins("requirements-dev.lock");
    for lock in ["requirements-run.lock", "requirements-model.lock"] {
        for (name, versions) in pins(lock) {
            for version in versions {
                assert!(
                    dev.get(&name).is_some_and(|v| v.contains(&version)),
                    "{lock} has {name}=={version}, requirements-dev.lock {:?}",
                    dev.get(&name)
                );
            }
        }
    }
}
