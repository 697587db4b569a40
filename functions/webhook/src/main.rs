//! Entry point of the webhook Lambda: configuration, clients, then the handler.

use std::convert::Infallible;

use lambda_http::{Error, run, service_fn};
use remedios_shared::config::Env;
use remedios_shared::telemetry;
use webhook::{Config, Webhook};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env(&Env::process()).unwrap_or_else(|e| telemetry::fatal(&e));
    let sdk = remedios_shared::aws::load().await;
    let webhook = Webhook::connect(&config, &sdk)
        .await
        .unwrap_or_else(|e| telemetry::fatal(&e));
    let webhook = &webhook;
    run(service_fn(move |request| async move {
        Ok::<_, Infallible>(webhook.handle(request).await)
    }))
    .await
}
