//! `rampart validate FILE…`: the server's own loader, run once.

use std::process::ExitCode;

use crate::loader;

/// Prints one line per problem and returns 1 when any file is invalid;
/// prints a summary and returns 0 otherwise.
#[allow(clippy::print_stdout)] // a command's report
pub fn run(patterns: &[String]) -> ExitCode {
    match loader::load(patterns) {
        Ok(loaded) => {
            println!("ok: {} flags in {} files", loaded.flags.len(), loaded.files.len());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("{error}");
            }
            eprintln!("{} problem{} found", errors.len(), if errors.len() == 1 { "" } else { "s" });
            ExitCode::from(1)
        }
    }
}
