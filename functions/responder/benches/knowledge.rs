//! The knowledge index on a 1 MB knowledge base (half English, half Spanish: generated FAQ
//! articles of varied words, headings and numbers, as a business's material looks):
//!
//! - `knowledge/search`: one question's retrieval (stemming the question for both
//!   languages, scoring, picking the passages). Target: under 20 ms.
//! - `knowledge/load`: a cold start's index load from the stored JSON (parse, rebuild the
//!   scorers). Target: under 100 ms.
//! - `knowledge/build`: cutting and indexing the material (what `remedios knowledge build`
//!   and a cold start after a change do).
//!
//! `cargo bench -p responder --bench knowledge`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use responder::knowledge::{Index, Knowledge};

const EN: &[&str] = &[
    "appointment",
    "booking",
    "patients",
    "clinic",
    "doctor",
    "treatment",
    "cleaning",
    "payment",
    "insurance",
    "parking",
    "garage",
    "reception",
    "opening",
    "hours",
    "holiday",
    "price",
    "euros",
    "children",
    "emergency",
    "tooth",
    "pain",
    "whitening",
    "implant",
    "checkup",
    "x-ray",
    "cancel",
    "reschedule",
    "message",
    "phone",
    "address",
    "street",
    "floor",
    "elevator",
    "wheelchair",
    "card",
    "cash",
    "invoice",
    "receipt",
    "form",
];
const ES: &[&str] = &[
    "cita",
    "reserva",
    "pacientes",
    "clínica",
    "médico",
    "tratamiento",
    "limpieza",
    "pago",
    "seguro",
    "aparcamiento",
    "garaje",
    "recepción",
    "horario",
    "festivo",
    "precio",
    "euros",
    "niños",
    "urgencia",
    "diente",
    "dolor",
    "blanqueamiento",
    "implante",
    "revisión",
    "radiografía",
    "cancelar",
    "cambiar",
    "mensaje",
    "teléfono",
    "dirección",
    "calle",
    "planta",
    "ascensor",
    "silla",
    "tarjeta",
    "efectivo",
    "factura",
    "recibo",
];

/// A deterministic pseudo-random word stream (xorshift), so every run indexes the same text.
struct Words(u64);

impl Words {
    fn next(&mut self, from: &[&'static str]) -> &'static str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        from[(self.0 % from.len() as u64) as usize]
    }
}

/// About `bytes` of Markdown articles in `lang`'s words.
fn material(
    bytes: usize,
    words: &[&'static str],
    glue: &[&'static str],
    seed: u64,
) -> Vec<(String, String)> {
    let mut rng = Words(seed);
    let mut files = Vec::new();
    let mut total = 0;
    let mut n = 0;
    while total < bytes {
        let mut text = String::new();
        for section in 0..8 {
            text.push_str(&format!(
                "## {} {} {section}\n\n",
                rng.next(words),
                rng.next(words)
            ));
            for _ in 0..3 {
                for i in 0..40 {
                    text.push_str(if i % 3 == 0 {
                        rng.next(words)
                    } else {
                        rng.next(glue)
                    });
                    text.push(' ');
                }
                text.push_str(&format!("{}.\n\n", rng.0 % 1000));
            }
        }
        total += text.len();
        files.push((format!("article-{seed}-{n}.md"), text));
        n += 1;
    }
    files
}

fn knowledge(c: &mut Criterion) {
    let mut files = material(
        512 * 1024,
        EN,
        &[
            "the", "for", "and", "with", "your", "our", "is", "can", "before",
        ],
        7,
    );
    files.extend(material(
        512 * 1024,
        ES,
        &[
            "el", "la", "para", "y", "con", "su", "nuestro", "es", "puede", "antes",
        ],
        11,
    ));
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let built = Instant::now();
    let index = Index::build(&files, BTreeMap::new(), 0);
    let build_ms = built.elapsed().as_millis();
    let json = serde_json::to_vec(&index).expect("the index serialises");
    eprintln!(
        "knowledge base: {} files, {:.2} MB of text, {} passages; index JSON {:.2} MB; one build {build_ms} ms",
        files.len(),
        bytes as f64 / 1e6,
        index.passages.len(),
        json.len() as f64 / 1e6
    );
    let loaded = Knowledge::from_index(index.clone());
    let questions = [
        "How much does a whitening treatment cost for children?",
        "Can I pay the invoice by card at reception?",
        "¿Cuánto cuesta una limpieza con el seguro?",
        "¿Puedo cambiar la cita por teléfono?",
    ];
    for q in questions {
        assert!(!loaded.search(q, 3, 2400).is_empty(), "{q} finds passages");
    }
    let mut group = c.benchmark_group("knowledge");
    group.sample_size(20);
    let mut i = 0;
    group.bench_function("search", |b| {
        b.iter(|| {
            i += 1;
            black_box(loaded.search(questions[i % questions.len()], 3, 2400).len())
        })
    });
    group.bench_function("load", |b| {
        b.iter(|| {
            let index: Index = serde_json::from_slice(&json).expect("the index parses");
            black_box(Knowledge::from_index(index).passages().len())
        })
    });
    group.sample_size(10);
    group.bench_function("build", |b| {
        b.iter(|| black_box(Index::build(&files, BTreeMap::new(), 0).passages.len()))
    });
    group.finish();
}

criterion_group!(benches, knowledge);
criterion_main!(benches);
