//! The JSON lines format of `export` and `import`: one session per line,
//! with its full id, user, times, and each value as the base64 of its
//! stored encoding.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sessiondb::{SessionId, SessionRecord};

pub(crate) fn to_line(r: &SessionRecord) -> Value {
    let data: BTreeMap<&str, String> = r
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), STANDARD.encode(v)))
        .collect();
    json!({
        "id": r.id.to_base64(),
        "user": r.user,
        "created_at": r.created_at,
        "last_seen": r.last_seen,
        "expires_at": r.expires_at,
        "absolute_deadline": r.absolute_deadline,
        "idle_timeout_ms": r.idle_timeout_ms,
        "data": data,
    })
}

/// One line of `export`'s output, parsed.
pub(crate) fn from_line(line: &str) -> Result<SessionRecord, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`{k}` must be a non-negative integer"))
    };
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .and_then(SessionId::from_base64)
        .ok_or("`id` must be a session id (43 base64url characters)")?;
    let user = match v.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if !u.is_empty() => Some(u.clone()),
        Some(_) => return Err("`user` must be a non-empty string or null".into()),
    };
    let mut data = BTreeMap::new();
    match v.get("data") {
        Some(Value::Object(m)) => {
            for (k, b) in m {
                let bytes = b
                    .as_str()
                    .and_then(|s| STANDARD.decode(s).ok())
                    .ok_or_else(|| format!("data value `{k}` must be base64"))?;
                data.insert(k.clone(), bytes);
            }
        }
        None => {}
        Some(_) => return Err("`data` must be an object".into()),
    }
    Ok(SessionRecord {
        id,
        version: 1,
        user,
        created_at: num("created_at")?,
        last_seen: num("last_seen")?,
        expires_at: num("expires_at")?,
        absolute_deadline: num("absolute_deadline")?,
        idle_timeout_ms: num("idle_timeout_ms")?,
        data,
    })
}
