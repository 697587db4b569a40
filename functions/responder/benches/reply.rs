//! The responder's speed, against the same real components as the tests (moto, the Graph
//! API emulator, the SmolLM2 model server behind the GPT4All gate):
//!
//! - `reply/overhead`: everything but the model's generation (reply record, read
//!   receipt, history read and write, prompt, send, progress record) per text message:
//!   the time of `Responder::process` minus the model time the gate measured.
//! - `reply/end_to_end`: from the job to the reply sent, model included.
//! - `reply/command`: a `/help` reply, which needs no model.
//!
//! After the runs it prints the model's own figures (time per answer, tokens per second).
//! `cargo bench -p responder`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestBed, text_job};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use remedios_testkit::model_server::GateRecord;
use responder::Behaviour;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_id() -> String {
    format!("wamid.BENCH{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn reply(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let bench = runtime.block_on(TestBed::start());
    eprintln!(
        "model server (llama.cpp, SmolLM2-135M Q4_1) listed its model after {:?}",
        bench.llm.startup()
    );
    let mut settings = bench.model_settings();
    settings.max_tokens = 64;
    settings.temperature = 0.7;
    let responder = bench.responder_with(settings, Behaviour::default());
    let questions = [
        "What is a good breakfast before a long walk?",
        "How do I keep basil alive on a windowsill?",
        "Give me one tip to sleep better.",
        "What should I pack for a rainy weekend?",
    ];

    let mut group = c.benchmark_group("reply");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));

    group.bench_function("overhead", |b| {
        b.iter_custom(|iters| {
            let mut overhead = Duration::ZERO;
            for i in 0..iters {
                let job = text_job(&next_id(), questions[i as usize % questions.len()]);
                let model_before = bench.gate.model_time();
                let started = Instant::now();
                runtime
                    .block_on(responder.process(&job, 1))
                    .expect("answered");
                let total = started.elapsed();
                let model = bench.gate.model_time() - model_before;
                overhead += total.saturating_sub(model);
            }
            overhead
        })
    });

    group.bench_function("end_to_end", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for i in 0..iters {
                let job = text_job(&next_id(), questions[i as usize % questions.len()]);
                runtime
                    .block_on(responder.process(&job, 1))
                    .expect("answered");
            }
            started.elapsed()
        })
    });

    group.bench_function("command", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                let job = text_job(&next_id(), "/help");
                runtime
                    .block_on(responder.process(&job, 1))
                    .expect("answered");
            }
            started.elapsed()
        })
    });
    group.finish();

    let (mut requests, mut tokens, mut time) = (0u32, 0u64, Duration::ZERO);
    let mut prompt_max = 0;
    for record in bench.gate.records() {
        if let GateRecord::Forwarded {
            elapsed,
            completion_tokens: Some(n),
            request,
            ..
        } = record
        {
            requests += 1;
            tokens += u64::from(n);
            time += elapsed;
            prompt_max = prompt_max.max(request.messages.len());
        }
    }
    if requests > 0 {
        eprintln!(
            "model: {requests} answers, {:.0} ms per answer on average, {:.1} completion tokens per answer, {:.1} tokens/s (generation and prompt evaluation together; up to {prompt_max} messages per prompt)",
            time.as_secs_f64() * 1000.0 / f64::from(requests),
            tokens as f64 / f64::from(requests),
            tokens as f64 / time.as_secs_f64(),
        );
    }
    drop(responder);
    drop(bench);
}

criterion_group!(benches, reply);
criterion_main!(benches);
