//! `whisper-convert`: converts a CTranslate2 (faster-whisper) Whisper model
//! directory into the GGML model file whisper.cpp loads.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use whisper_convert::{ModelFiles, Options, Progress, Weights, convert_files_with};

/// Convert a CTranslate2 (faster-whisper) Whisper model into a GGML file
/// for whisper.cpp.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory with model.bin (or model.bin.part1, model.bin.part2, ...)
    /// and vocabulary.txt or vocabulary.json.
    input: PathBuf,
    /// The GGML file to write (replaced atomically).
    output: PathBuf,
    /// Another directory holding files of the same model, e.g. further
    /// model.bin.partN files shipped separately. May be repeated.
    #[arg(long = "extra-dir", value_name = "DIR")]
    extra_dirs: Vec<PathBuf>,
    /// Store the weight matrices quantised: `q8_0` (GGML's 8-bit blocks,
    /// about half the size of f16) or `q5_0` (5-bit blocks, about a third).
    /// Without it they stay f16.
    #[arg(long, value_name = "TYPE", value_parser = parse_weights)]
    quantize: Option<Weights>,
    /// Print only the summary.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_weights(name: &str) -> Result<Weights, String> {
    Weights::parse(name)
        .ok_or_else(|| format!("unknown weight type {name:?}: use q8_0, q5_0 (or f16)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut dirs = vec![args.input.clone()];
    dirs.extend(args.extra_dirs.iter().cloned());

    let result = ModelFiles::discover_in(&dirs).and_then(|files| {
        if !args.quiet {
            eprintln!("whisper-convert: reading {}", files.describe_model());
        }
        let mut next_decile = 1;
        let options = Options::with_weights(args.quantize.unwrap_or_default());
        convert_files_with(&files, &args.output, &options, |p| {
            if args.quiet {
                return;
            }
            match p {
                Progress::Indexed {
                    variables,
                    input_bytes,
                    tensors,
                } => eprintln!(
                    "whisper-convert: {variables} variables, {input_bytes} bytes; writing {tensors} tensors to {}",
                    args.output.display()
                ),
                Progress::Tensor { index, total, name } => {
                    let done = index + 1;
                    if done * 10 >= next_decile * total {
                        eprintln!("whisper-convert: {:3}% {name}", done * 100 / total.max(1));
                        next_decile = done * 10 / total.max(1) + 1;
                    }
                }
                _ => {}
            }
        })
    });

    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            // Every error message already includes its cause.
            let _ = writeln!(std::io::stderr(), "whisper-convert: error: {err}");
            ExitCode::FAILURE
        }
    }
}
