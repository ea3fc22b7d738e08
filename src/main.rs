//! The `align` binary: [`align::cli::main_from`] with the process arguments.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(align::cli::main_from(std::env::args_os()))
}
