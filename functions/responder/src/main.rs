//! Entry point of the responder Lambda: configuration, clients, then the handler.

use std::convert::Infallible;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use remedios_shared::clock::Deadline;
use remedios_shared::config::Env;
use remedios_shared::telemetry;
use responder::{Config, Responder};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env(&Env::process()).unwrap_or_else(|e| telemetry::fatal(&e));
    let sdk = remedios_shared::aws::load().await;
    let responder = Responder::connect(&config, &sdk)
        .await
        .unwrap_or_else(|e| telemetry::fatal(&e));
    let responder = &responder;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Deadline::at_unix_ms(event.context.deadline);
        Ok::<_, Infallible>(responder.handle_by(event.payload, deadline).await)
    }))
    .await
}
