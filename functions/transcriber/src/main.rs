//! Entry point of the transcriber Lambda: configuration, clients and the model, then the
//! handler.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use remedios_shared::clock::Deadline;
use remedios_shared::config::Env;
use remedios_shared::telemetry;
use transcriber::{Config, Transcriber};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // What the deployed build of whisper.cpp uses (scripts/check-deploy.sh asks).
    if std::env::args().nth(1).as_deref() == Some("--system-info") {
        println!("{}", transcriber::speech::system_info());
        return Ok(());
    }
    telemetry::init();
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
