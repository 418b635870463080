//! The `repro` binary: parses the command line and runs it with the engine library.

use clap::Parser;

fn main() {
    std::process::exit(repro::cli::main(repro::cli::Cli::parse()));
}
