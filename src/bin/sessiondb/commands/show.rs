//! `sessiondb show`: one session's metadata, and its values if asked.

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::fail::{Fail, Outcome};
use crate::output::{print_json, printable, time};
use crate::store::{Store, resolve};

pub(crate) fn show(store: &Store, id: &str, values: bool, as_json: bool) -> Outcome {
    let id = resolve(store, id)?;
    let Some(r) = store.record(&id)? else {
        return Err(Fail(
            format!("error: session {} is not live (expired or gone)", id.hint()),
            1,
        ));
    };
    let value_of = |k: &str, bytes: &[u8]| {
        let mut v = json!({"key": k, "encoded_bytes": bytes.len()});
        if values {
            v["base64"] = json!(STANDARD.encode(bytes));
            if let Ok(Some(text)) = r.get::<String>(k) {
                v["text"] = json!(text);
            }
        }
        v
    };
    let keys: Vec<Value> = r.data.iter().map(|(k, b)| value_of(k, b)).collect();
    if as_json {
        print_json(&json!({
            "id": id.to_base64(),
            "user": r.user,
            "version": r.version,
            "created_at": r.created_at,
            "last_seen": r.last_seen,
            "expires_at": r.expires_at,
            "absolute_deadline": r.absolute_deadline,
            "idle_timeout_ms": r.idle_timeout.as_millis(),
            "values": keys,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("id:            {}", id.to_base64());
    println!(
        "user:          {}",
        printable(r.user.as_deref().unwrap_or("-"))
    );
    println!("version:       {}", r.version);
    println!("created:       {}", time(r.created_at));
    println!("last seen:     {}", time(r.last_seen));
    println!("expires:       {}", time(r.expires_at));
    println!("deadline:      {}", time(r.absolute_deadline));
    println!("idle timeout:  {} s", r.idle_timeout.as_secs());
    println!("values:        {}", r.data.len());
    for v in keys {
        let key = printable(v["key"].as_str().unwrap_or_default());
        print!("  {key}: {} bytes", v["encoded_bytes"]);
        if let Some(t) = v.get("text").and_then(Value::as_str) {
            // Debug quotes and escapes controls; `printable` adds the rest.
            print!(", text {}", printable(&format!("{t:?}")));
        } else if let Some(b) = v.get("base64").and_then(Value::as_str) {
            print!(", base64 {b}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
