//! The `crema` command line.

mod check;
mod classify;
mod convert;
mod draw;
mod embed;
mod forward;
mod import;
mod json;
mod plot;
mod plot_trials;
mod sample;
mod studio;
mod test;
mod time;
mod train;
mod translate;
mod tune;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "crema",
    version,
    about = "A declarative deep-learning framework in the spirit of Caffe"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a model: blob shapes, parameter count, optional numeric gradient check.
    Check(check::Args),
    /// Top-k classes for images with a trained net (Caffe's classify.py / cpp_classification).
    Classify(classify::Args),
    /// Turn a Caffe prototxt (and caffemodel) into a crema YAML model (and weights).
    Import(import::Args),
    /// Write a crema YAML model or solver back to Caffe prototxt.
    Export(import::ExportArgs),
    /// One forward pass with inputs from .npy files; writes chosen blobs as .npy.
    Forward(forward::Args),
    /// Per-layer forward and backward time, Caffe-style.
    Time(time::Args),
    /// Convert data sets: IDX or image list to LMDB, mean images, IDX to PNG.
    Convert(convert::Args),
    /// Train a net from a solver file (fine-tune with --weights, resume with --snapshot).
    Train(train::Args),
    /// Score a model in the TEST phase: each output blob's mean over iterations.
    Test(test::Args),
    /// Draw loss, test outputs and learning rate from a JSON-lines training log, or the trials of
    /// `crema tune` (trials.jsonl), as a PNG.
    Plot(plot::Args),
    /// Draw the net as a graph (Graphviz DOT, or SVG/PNG/PDF through `dot`).
    Draw(draw::Args),
    /// Generate text from a trained character model (deploy net with T = 1).
    Sample(sample::Args),
    /// Features of labelled IDX images: .npy, a 2-D scatter PNG, 1-NN accuracy, reconstructions.
    Embed(embed::Args),
    /// A local web page: live training curves, nets with filters and activations, classify.
    Studio(studio::Args),
    /// Hyperparameter search: Gaussian-process Bayesian optimization (or random) over solver
    /// and layer fields, each trial a short training run.
    Tune(tune::Args),
    /// Greedy decoding with a trained encoder-decoder; scores exact match with --pairs.
    Translate(translate::Args),
}

/// How a command failed: a user error (exit 1) or an internal failure (exit 2).
pub enum Failure {
    User(anyhow::Error),
    Internal(anyhow::Error),
}

impl From<crema::Error> for Failure {
    fn from(e: crema::Error) -> Self {
        Failure::User(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::User(e)
    }
}

fn main() -> ExitCode {
    // A usage error is a user error (exit 1, as FORMAT.md says), not clap's exit 2; --help and
    // --version print to stdout and exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A closed stdout/stderr leaves nothing to report to.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let r = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Import(a) => import::run(a),
        Command::Export(a) => import::run_export(a),
        Command::Forward(a) => forward::run(a),
        Command::Time(a) => time::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Train(a) => train::run(a),
        Command::Test(a) => test::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Draw(a) => draw::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Translate(a) => translate::run(a),
        Command::Studio(a) => studio::run(a),
        Command::Tune(a) => tune::run(a),
    };
    match r {
        Ok(code) => code,
        Err(Failure::User(e)) => {
            eprintln!("error: {}", crema::error::chain_text(e.as_ref()));
            ExitCode::from(1)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("internal error: {}", crema::error::chain_text(e.as_ref()));
            ExitCode::from(2)
        }
    }
}
