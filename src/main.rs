//! The `align` binary: parse, run, map the outcome to an exit code.

use align::cli;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::from(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                });
            }
            let text = e.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("align: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("align: error: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
