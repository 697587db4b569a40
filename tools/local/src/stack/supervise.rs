//! The functions' processes under `cargo lambda watch`: starting them, starting them
//! again when one dies (as Lambda gives a fresh environment after a crash), and knowing
//! what is left after a stop. Also the `/webhook` endpoint in front of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::process::Command;

use remedios_emulators::child::GroupChild;
use remedios_emulators::paths;

use super::build::{cargo_lambda, target_dir};
use super::credentials::CREDENTIAL_VARS;
use super::health::probe_sqs_function;
use super::options::function_settings;
use super::{FUNCTIONS, LocalStack, Options, StackError};
use crate::pump::HttpInvoker;
use crate::webhook_proxy;
use remedios_shared::config::Origin;

/// How often the supervisor looks for function processes that died.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
/// A function missing this many looks in a row has died (one look can fall between
/// `cargo lambda watch` stopping a function for a rebuild and starting it again).
const MISSING_LOOKS: u32 = 2;
/// More restarts than this within [`RESTART_WINDOW`] and the supervisor gives up: a
/// function that dies at every start needs its log read, not another restart.
const MAX_RESTARTS: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(300);

/// One start of the functions after a function's process died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The functions found dead.
    pub crashed: Vec<String>,
    pub at: SystemTime,
    /// Whether they answer again, or why not (then the supervisor stops).
    pub outcome: Result<(), String>,
}

/// What the status says of `function`'s crashes: `died 2× and was started again (last
/// 40 s ago)`, or why it was not.
pub fn restart_note(restarts: &[Restart], function: &str) -> Option<String> {
    let its: Vec<&Restart> = restarts
        .iter()
        .filter(|r| r.crashed.iter().any(|c| c == function))
        .collect();
    let last = its.last()?;
    let ago = last.at.elapsed().unwrap_or_default().as_secs();
    Some(match &last.outcome {
        Ok(()) => format!(
            "died {}× and was started again (last {ago} s ago)",
            its.len()
        ),
        Err(why) => format!("died and was not started again: {why}"),
    })
}

/// `cargo lambda watch` and what starting it again takes.
pub(super) struct Functions {
    watch: GroupChild,
    options: Options,
    env: BTreeMap<String, String>,
    /// Instances of one function at once, as the busiest event source may run them.
    concurrency: usize,
    functions_url: String,
    pgid: Arc<AtomicI32>,
    /// Per function seen running since the watcher started: how many looks in a row
    /// found no process (a function starts at its first invocation).
    missing: BTreeMap<&'static str, u32>,
    restarts: Vec<Restart>,
}

impl Functions {
    /// Starts `cargo lambda watch` with the functions' environment.
    pub(super) fn start(
        options: &Options,
        env: BTreeMap<String, String>,
        concurrency: usize,
        functions_url: &str,
    ) -> Result<Self, StackError> {
        let watch = spawn_functions(options, &env, concurrency)?;
        let pgid = Arc::new(AtomicI32::new(watch.pgid()));
        Ok(Functions {
            watch,
            options: options.clone(),
            env,
            concurrency,
            functions_url: functions_url.to_owned(),
            pgid,
            missing: BTreeMap::new(),
            restarts: Vec::new(),
        })
    }

    /// The watcher's process group, kept up to date across restarts.
    pub(super) fn pgid(&self) -> Arc<AtomicI32> {
        self.pgid.clone()
    }

    /// Stops `cargo lambda watch` and the function processes it started (they run in
    /// process groups of their own, so stopping its group leaves them).
    pub(super) async fn stop(&mut self) {
        self.watch.stop(Duration::from_secs(5)).await;
        let runtime_api = format!("{}/", self.functions_url);
        for pid in
            remedios_emulators::child::processes_with_env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
        {
            remedios_emulators::child::kill(pid);
        }
    }

    async fn restart(&mut self) -> Result<(), StackError> {
        self.stop().await;
        let port = self.options.ports.functions;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.watch = spawn_functions(&self.options, &self.env, self.concurrency)?;
        self.pgid.store(self.watch.pgid(), Ordering::SeqCst);
        self.missing.clear();
        let limit = self.options.ready_timeout;
        let started = Instant::now();
        let invoker = HttpInvoker::new(&self.functions_url);
        for function in ["transcriber", "responder"] {
            loop {
                match probe_sqs_function(&invoker, function).await {
                    Ok(()) => break,
                    Err(detail) if started.elapsed() > limit => {
                        return Err(StackError::NotReady {
                            part: format!("{function} function (restarted)"),
                            limit,
                            detail,
                            log: self.options.log_dir.join("functions.log"),
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
        Ok(())
    }

    /// The functions that were running and whose process is gone: neither the binary
    /// nor the `cargo run` that rebuilds it carries their name any more.
    fn crashed(&mut self) -> Vec<String> {
        let runtime_api = format!("{}/", self.functions_url);
        let processes =
            remedios_emulators::child::processes_with_env("AWS_LAMBDA_RUNTIME_API", &runtime_api);
        let mut crashed = Vec::new();
        for function in FUNCTIONS {
            let running = processes.iter().any(|pid| {
                remedios_emulators::child::env_var(*pid, "AWS_LAMBDA_FUNCTION_NAME").as_deref()
                    == Some(function)
            });
            match self.missing.get_mut(function) {
                _ if running => {
                    self.missing.insert(function, 0);
                }
                Some(looks) => {
                    *looks += 1;
                    if *looks >= MISSING_LOOKS {
                        crashed.push(function.to_owned());
                    }
                }
                None => {}
            }
        }
        crashed
    }

    /// Whether the functions restarted too often lately to try again.
    fn restarting_too_often(&self) -> bool {
        let recent = self
            .restarts
            .iter()
            .filter(|r| r.at.elapsed().is_ok_and(|ago| ago < RESTART_WINDOW))
            .count();
        recent >= MAX_RESTARTS
    }
}

/// Starts the functions again whenever one of them died, as Lambda starts a fresh
/// execution environment after a crash. Stops when the watcher itself exits (`up`
/// reports that), when a restart fails, or after [`MAX_RESTARTS`] in
/// [`RESTART_WINDOW`].
pub(super) async fn supervise(functions: Arc<tokio::sync::Mutex<Functions>>) {
    let mut ticker = tokio::time::interval(SUPERVISE_EVERY);
    loop {
        ticker.tick().await;
        let mut guard = functions.lock().await;
        if guard.watch.exited().is_some() {
            return;
        }
        let crashed = guard.crashed();
        if crashed.is_empty() {
            continue;
        }
        if guard.restarting_too_often() {
            tracing::error!(?crashed, "functions keep dying: not starting them again");
            guard.restarts.push(Restart {
                crashed,
                at: SystemTime::now(),
                outcome: Err(format!(
                    "they died {MAX_RESTARTS} times within {} minutes: not started again (see \
                     functions.log)",
                    RESTART_WINDOW.as_secs() / 60
                )),
            });
            return;
        }
        tracing::warn!(
            ?crashed,
            "a function's process died: starting the functions again"
        );
        let outcome = guard.restart().await.map_err(|e| e.to_string());
        let failed = outcome.is_err();
        guard.restarts.push(Restart {
            crashed,
            at: SystemTime::now(),
            outcome,
        });
        if failed {
            return;
        }
    }
}

/// What a stack started, to check that none of it is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processes {
    pub groups: Vec<i32>,
    /// Ports its processes listened on.
    pub ports: Vec<u16>,
    /// The functions' `AWS_LAMBDA_RUNTIME_API` prefix (cargo-lambda runs each function
    /// in a process group of its own).
    pub runtime_api: String,
}

impl Processes {
    /// Descriptions of what is still running.
    pub fn alive(&self) -> Vec<String> {
        let groups = self
            .groups
            .iter()
            .filter(|g| remedios_emulators::child::group_alive(**g))
            .map(|g| format!("process group {g}"));
        let ports = self
            .ports
            .iter()
            .filter(|p| std::net::TcpStream::connect(("127.0.0.1", **p)).is_ok())
            .map(|p| format!("a process listening on port {p}"));
        let functions = remedios_emulators::child::processes_with_env(
            "AWS_LAMBDA_RUNTIME_API",
            &self.runtime_api,
        )
        .into_iter()
        .map(|pid| format!("function process {pid}"));
        groups.chain(ports).chain(functions).collect()
    }
}

pub(super) fn spawn_functions(
    options: &Options,
    env: &BTreeMap<String, String>,
    concurrency: usize,
) -> Result<GroupChild, StackError> {
    let mut command = Command::new(cargo_lambda());
    command
        .current_dir(paths::workspace_root())
        .args(["lambda", "watch", "-A", "127.0.0.1", "-P"])
        .arg(options.ports.functions.to_string())
        .args(["--timeout", "900"])
        .args(["--concurrency", &concurrency.to_string()]);
    if !options.hot_reload {
        command.arg("--ignore-changes");
    }
    if options.release {
        command.arg("--release");
    }
    // A secret in the user's shell must not reach the functions beside its parameter.
    let secrets = function_settings()
        .into_iter()
        .filter(|s| s.origin == Origin::Secret);
    for var in secrets.map(|s| s.name).chain(CREDENTIAL_VARS) {
        command.env_remove(var);
    }
    command.envs(env).env("CARGO_TARGET_DIR", target_dir());
    GroupChild::spawn(
        "cargo lambda watch",
        command,
        &options.log_dir.join("functions.log"),
    )
    .map_err(|source| StackError::Spawn {
        what: format!("{} lambda watch", cargo_lambda().display()),
        source,
    })
}

/// `/webhook` on `port`, forwarded to the webhook's function URL under cargo-lambda:
/// the one path of the stack that may be exposed (ngrok), like the HTTP API in AWS.
pub(super) async fn spawn_webhook_proxy(
    port: u16,
    functions_url: &str,
    limits: webhook_proxy::ProxyBounds,
) -> Result<tokio::task::JoinHandle<()>, StackError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Spawn {
            what: format!("the webhook endpoint on {addr}"),
            source,
        })?;
    let target = format!("{functions_url}/lambda-url/webhook/");
    Ok(tokio::spawn(webhook_proxy::serve(listener, target, limits)))
}

impl LocalStack {
    /// The running processes of `function` (its binary name) under `cargo lambda watch`.
    pub fn function_pids(&self, function: &str) -> Vec<u32> {
        let runtime_api = format!("{}/", self.info.functions_url);
        remedios_emulators::child::processes_with_env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim_end() == function)
            })
            .collect()
    }

    /// The process groups and ports the stack started (to check none is left).
    pub fn processes(&self) -> Processes {
        let groups = vec![self.functions_pgid.load(Ordering::SeqCst)];
        let runtime_api = format!("{}/", self.info.functions_url);
        let mut ports = vec![self.moto.port()];
        if let Ok(url) = url::Url::parse(&self.info.functions_url) {
            ports.extend(url.port());
        }
        if self.info.model_local
            && let Ok(url) = url::Url::parse(&self.info.model_url)
        {
            ports.extend(url.port());
        }
        Processes {
            groups,
            ports,
            runtime_api,
        }
    }

    /// Whether the functions' watcher is still running (it is the part most likely to
    /// stop on its own, on a build error it cannot recover from). `None` while the
    /// functions are being started again.
    pub fn functions_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.functions.try_lock().ok()?.watch.exited()
    }

    /// Each time the functions were started again because one of them died, oldest
    /// first (only with [`Options::revive_crashed`]).
    pub async fn restarts(&self) -> Vec<Restart> {
        self.functions.lock().await.restarts.clone()
    }

    /// Starts the functions again (a new `cargo lambda watch`), as Lambda gives a fresh
    /// execution environment to the next invocation after one crashed: `cargo lambda
    /// watch` does not restart a function process that died. Invocations in flight fail,
    /// so their batches come back after the visibility timeout. Returns once the three
    /// functions answer.
    pub async fn restart_functions(&mut self) -> Result<(), StackError> {
        self.functions.lock().await.restart().await
    }
}
