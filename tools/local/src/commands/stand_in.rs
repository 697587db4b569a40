//! `remedios stand-in-model`: a fast stand-in for the GPT4All host (load tests).

use super::CliError;

pub async fn run(port: u16) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(CliError::io(format!("cannot listen on 127.0.0.1:{port}")))?;
    println!("stand-in model listening on http://127.0.0.1:{port}/v1");
    remedios_emulators::stand_in::serve(listener)
        .await
        .map_err(CliError::io("the stand-in model"))
}
