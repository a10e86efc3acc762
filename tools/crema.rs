//! The `crema` command line.

mod check;
mod convert;
mod draw;
mod plot;
mod test;
mod time;
mod train;

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
    /// Convert data sets: IDX or image list to LMDB, mean images, IDX to PNG.
    Convert(convert::Args),
    /// Train a net from a solver file (fine-tune with --weights, resume with --snapshot).
    Train(train::Args),
    /// Score a model in the TEST phase: each output blob's mean over iterations.
    Test(test::Args),
    /// Draw loss, test outputs and learning rate from a JSON-lines training log (PNG).
    Plot(plot::Args),
    /// Draw the net as a graph (Graphviz DOT, or SVG/PNG/PDF through `dot`).
    Draw(draw::Args),
    /// Per-layer forward and backward time, Caffe-style.
    Time(time::Args),
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
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Train(a) => train::run(a),
        Command::Test(a) => test::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Draw(a) => draw::run(a),
        Command::Time(a) => time::run(a),
    };
    match r {
        Ok(code) => code,
        Err(Failure::User(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("internal error: {e:#}");
            ExitCode::from(2)
        }
    }
}
