use std::process::ExitCode;

use clap::Parser;
use credwatch::cli::{Cli, execute};

// A check makes some hundred small allocations (HTTP, JSON, the claimed row) across the
// runtime's threads and the store's writer thread; with mimalloc a sweep counts a tenth fewer
// instructions than with glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Everything credwatch writes (the database, its journal, e-mails holding live links, keys)
    // is for its own user alone, run by hand or not; systemd sets the same with UMask=0077.
    // SAFETY: umask(2) only sets this process's file-creation mask; nothing runs beside it yet.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    if !matches!(cli.command, credwatch::cli::Command::Run) {
        // A command's output piped into `head` ends quietly when the reader goes, as other
        // Unix tools do, rather than panicking on the write. The daemon keeps SIGPIPE ignored:
        // a peer that hangs up must not end it.
        // SAFETY: signal(2) sets this process's disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One core is left to the threads outside the runtime: SQLite's writer, which commits
    // every check's result, and sqlx's SQLite workers. Competing with them for every core cost
    // a tenth more CPU per check in context switches (measured on 2 cores). TOKIO_WORKER_THREADS
    // still decides when it is set.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("credwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("credwatch: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
