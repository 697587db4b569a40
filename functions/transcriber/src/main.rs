//! Entry point of the transcriber Lambda: configuration, clients and the model, then the
//! handler.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use remedios_shared::clock::Deadline;
use remedios_shared::config::Env;
use remedios_shared::telemetry;
use transcriber::cpu::{self, Choice};
use transcriber::{Config, Transcriber};

fn main() -> Result<(), Error> {
    // First, before any thread: the AVX-512 build replaces this process when the CPU has
    // what it needs (see transcriber::cpu).
    let build = cpu::exec_best_build();
    // What the deployed build of whisper.cpp uses (scripts/check-deploy.sh asks).
    if std::env::args().nth(1).as_deref() == Some("--system-info") {
        println!(
            "build = {} ({}) | {}",
            build.build(),
            build.reason(),
            transcriber::speech::system_info()
        );
        return Ok(());
    }
    serve(build)
}

#[tokio::main]
async fn serve(build: Choice) -> Result<(), Error> {
    telemetry::init();
    tracing::info!(build = build.build(), reason = %build.reason(), "whisper.cpp build");
    let config = Config::from_env(&Env::process()).unwrap_or_else(|e| telemetry::fatal(&e));
    let sdk = remedios_shared::aws::load().await;
    let transcriber = Transcriber::connect(&config, &sdk)
        .await
        .unwrap_or_else(|e| telemetry::fatal(&e));
    let transcriber = &transcriber;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Deadline::at_unix_ms(event.context.deadline);
        Ok::<_, Infallible>(transcriber.handle_by(event.payload, deadline).await)
    }))
    .await
}
