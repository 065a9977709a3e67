//! The `registry-token` command: parses the command line, sets up logging, runs a command.

use std::process::ExitCode;

use clap::Parser;
use registry_token::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(cli.log_format);
    cli::run(cli)
}
