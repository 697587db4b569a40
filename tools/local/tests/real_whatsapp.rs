//! With real WhatsApp connected, `remedios up` refuses the public local secrets before it
//! starts anything, and makes (and keeps) a random verify token.

use remedios_local::stack::{
    LOCAL_APP_SECRET, LOCAL_VERIFY_TOKEN, LocalStack, Options, StackError, webhook_secrets,
};

fn options(vars: &[(&str, &str)]) -> (tempfile::TempDir, Options) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = Options::isolated(&dir.path().join("logs")).expect("ports");
    options
        .vars
        .extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    (dir, options)
}

#[tokio::test]
async fn real_whatsapp_refuses_the_public_local_secrets_before_starting_anything() {
    for (vars, says) in [
        (
            vec![("WHATSAPP_ACCESS_TOKEN", "EAAG-real")],
            "WHATSAPP_APP_SECRET is not",
        ),
        (
            vec![
                ("WHATSAPP_ACCESS_TOKEN", "EAAG-real"),
                ("WHATSAPP_APP_SECRET", LOCAL_APP_SECRET),
            ],
            "public local secret",
        ),
        (
            vec![
                ("WHATSAPP_ACCESS_TOKEN", "EAAG-real"),
                ("WHATSAPP_APP_SECRET", "meta-app-secret"),
                ("WHATSAPP_VERIFY_TOKEN", LOCAL_VERIFY_TOKEN),
            ],
            "public local token",
        ),
    ] {
        let (dir, options) = options(&vars);
        let started = std::time::Instant::now();
        let err = match LocalStack::up(options, |_| {}).await {
            Ok(_) => panic!("started with {vars:?}"),
            Err(e) => e,
        };
        assert!(matches!(err, StackError::Prerequisite(_)), "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(
            started.elapsed().as_secs() < 5,
            "refused before starting anything"
        );
        assert!(!dir.path().join("logs").exists(), "nothing was started");
    }
}

#[test]
fn real_whatsapp_gets_a_random_verify_token_that_is_kept() {
    let keep = tempfile::tempdir().expect("tempdir");
    let (_dir, real) = options(&[
        ("WHATSAPP_ACCESS_TOKEN", "EAAG-real"),
        ("WHATSAPP_APP_SECRET", "meta-app-secret"),
    ]);
    let (secret, token) = webhook_secrets(&real, keep.path()).expect("secrets");
    assert_eq!(secret, "meta-app-secret");
    assert_eq!(token.len(), 64);
    assert_ne!(token, LOCAL_VERIFY_TOKEN);
    let (_, again) = webhook_secrets(&real, keep.path()).expect("secrets");
    assert_eq!(
        again, token,
        "kept for the next `up`: Meta's dashboard holds it"
    );

    let (_dir, emulated) = options(&[]);
    assert_eq!(
        webhook_secrets(&emulated, keep.path()).expect("secrets"),
        (LOCAL_APP_SECRET.to_owned(), LOCAL_VERIFY_TOKEN.to_owned()),
        "the emulator keeps the documented local secrets"
    );
}
