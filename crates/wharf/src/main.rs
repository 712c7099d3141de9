//! The `wharf` binary: the control-plane server (`wharf server`), the host agent
//! (`wharf agent`), and the client commands that drive the server over HTTP. All
//! printing of the workspace lives here.
//!
//! Exit codes: 0 success; 2 usage errors, including a missing server or token
//! configuration; 1 every other failure, with one `error: ...` line on stderr
//! (a followed release that failed or was cancelled included); 130 when Ctrl-C
//! stopped following a release.

mod allocator;
mod commands;
mod config;
mod error;
mod output;

use clap::Parser as _;
use std::io::Write as _;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

fn main() -> ExitCode {
    // Clap prints help and usage errors itself and exits 0 or 2.
    let cli = commands::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(message) = err.message() {
                // If stderr itself is gone there is nobody left to tell.
                let _ = writeln!(std::io::stderr(), "error: {message}");
            }
            err.exit_code()
        }
    }
}
