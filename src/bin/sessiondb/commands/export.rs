//! `sessiondb export`: every live session as JSON lines, to stdout or a new owner-only file.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use crate::fail::{Fail, Outcome};
use crate::jsonl::to_line;
use crate::output::{spinner, write_json};
use crate::store::{Store, each_record};

/// Where `export` writes: a new owner-only file, or stdout.
fn export_sink(output: Option<&Path>) -> Result<Box<dyn std::io::Write>, Fail> {
    let Some(path) = output else {
        warn_if_stdout_is_shared();
        return Ok(Box::new(std::io::stdout().lock()));
    };
    let mut options = std::fs::OpenOptions::new();
    // create_new: never truncate a file that may be readable by others (a
    // mode only applies to a file being made), and never follow a link.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => Ok(Box::new(file)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Fail(
            format!(
                "error: {} exists; export writes only a new file",
                path.display()
            ),
            2,
        )),
        Err(e) => Err(Fail(format!("error: {}: {e}", path.display()), 2)),
    }
}

/// Redirected stdout gets the shell's umask (often world-readable): say so.
fn warn_if_stdout_is_shared() {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::PermissionsExt as _;
        let shared = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0);
        if shared {
            eprintln!(
                "warning: the export goes to a file others may read; it holds every session's \
                 full id and values. Use --output FILE, which makes it owner-only."
            );
        }
    }
}

pub(crate) fn export(store: &Store, output: Option<&Path>) -> Outcome {
    let mut out = std::io::BufWriter::new(export_sink(output)?);
    let bar = spinner("exporting");
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (mut written, mut corrupt) = (0u64, 0u64);
    each_record(store, &bar, |id, r| {
        match r {
            Ok(r) if r.expires_at > now => {
                write_json(&mut out, &to_line(&r))?;
                written += 1;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("skipped {}: {e}", id.hint());
                corrupt += 1;
            }
        }
        Ok(true)
    })?;
    out.flush()?;
    bar.finish_and_clear();
    eprintln!("exported {written} live session(s)");
    Ok(if corrupt == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{corrupt} record(s) could not be read; `sessiondb check` lists them");
        ExitCode::from(1)
    })
}
