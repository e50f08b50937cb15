//! Printing what comes from the store: terminal-safe text and JSON, times,
//! and progress spinners (on stderr, only when it is a terminal).

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::time::{Duration, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize as _;
use serde_json::Value;

use crate::fail::Fail;

/// Characters that drive a terminal or reorder what it shows: C0 and C1
/// controls and DEL (`char::is_control`), and Unicode's bidirectional
/// formatting characters (embeddings, overrides, isolates, marks).
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [unsafe](is_unsafe) character written as `\u{..}`:
/// for everything from the store that text output shows.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// serde_json's compact format, except that [unsafe](is_unsafe) characters
/// are written as `\uXXXX` too (serde_json escapes only C0 controls, `"`
/// and `\\`): the same JSON to any parser, and harmless on a terminal.
pub(crate) struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every unsafe character is in the BMP: one \uXXXX.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Writes `v` as one line of [terminal-safe](TerminalSafe) JSON.
pub(crate) fn write_json(out: &mut impl std::io::Write, v: &Value) -> std::io::Result<()> {
    v.serialize(&mut serde_json::Serializer::with_formatter(
        &mut *out,
        TerminalSafe,
    ))?;
    writeln!(out)
}

pub(crate) fn print_json(v: &Value) -> Result<(), Fail> {
    write_json(&mut std::io::stdout().lock(), v)?;
    Ok(())
}

pub(crate) fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub(crate) fn spinner(what: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
