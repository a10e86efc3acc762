//! The `crema` command line.

mod check;
mod convert;

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
