//! `sessiondb`: the operator's tool. Inspect, sweep, check, repair, revoke,
//! export and import a store (the directory the engine's `open` and the
//! demo's `--data` take), and watch a running service. Build with
//! `--features cli`.
//!
//! Every command works on a stopped store and on one a running service
//! holds: then it runs inside the service, through its control socket
//! (`sessiondb::control`), with the same output and exit status. It says
//! on stderr which way it went.
//!
//! Data goes to stdout, and nothing else does: messages and progress bars
//! go to stderr, and progress bars only when stderr is a terminal. Exit
//! status: 0 on success, 1 when the store has problems (`check`) or the
//! input does (`import`), 2 for usage errors and failures.
//!
//! User names, value keys and values come from whoever uses the service,
//! so nothing the tool prints lets them through raw: text output writes
//! control characters (C0, DEL, C1) and bidirectional formatting characters
//! as `\u{..}`, and JSON output writes them as `\uXXXX` (the same string to
//! a parser). A name cannot inject escape sequences into an operator's
//! terminal or reorder the line it is shown on.

mod cli;
mod commands;
mod fail;
mod jsonl;
mod output;
mod store;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::commands::{check, export, import, list, revoke, show, stats, sweep, watch};
use crate::fail::{Fail, Outcome};
use crate::output::printable;
use crate::store::{connect_live, open, open_existing};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(Fail(msg, code)) => {
            for line in msg.lines() {
                eprintln!("{}", printable(line));
            }
            ExitCode::from(code)
        }
    }
}

fn run(command: Command) -> Outcome {
    match command {
        Command::Stats { dir, out } => stats(&open_existing(&dir)?, &dir, out.json),
        Command::Watch { dir, out } => watch(&connect_live(&dir)?, out.json),
        Command::List {
            dir,
            user,
            limit,
            full_ids,
            out,
        } => list(
            &open_existing(&dir)?,
            user.as_deref(),
            limit,
            full_ids,
            out.json,
        ),
        Command::Show {
            dir,
            id,
            values,
            out,
        } => show(&open_existing(&dir)?, &id, values, out.json),
        Command::Revoke { dir, target, out } => revoke(open_existing(&dir)?, target, out.json),
        Command::Sweep { dir, out } => sweep(open_existing(&dir)?, out.json),
        Command::Check { dir, repair, out } => check(open_existing(&dir)?, repair, out.json),
        Command::Export { dir, output } => export(&open_existing(&dir)?, output.as_deref()),
        Command::Import { dir } => import(open(&dir)?),
    }
}
