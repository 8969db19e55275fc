//! The `benchmark` binary: see the library's documentation and `benchmark --help`.

use std::io::Write;
use std::process::ExitCode;

use benchmark::cli::Cli;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.plan() {
        Ok(plan) => benchmark::execute(&plan).await.map(|r| (plan.json, r)),
        Err(e) => Err(e),
    };
    match result {
        Ok((json, report)) => {
            let out = if json {
                report.to_json()
            } else {
                report.to_text()
            };
            let _ = writeln!(std::io::stdout().lock(), "{out}");
            if report.all_failed() {
                let _ = writeln!(std::io::stderr(), "benchmark: every request failed");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}
