//! Small helpers shared by several modules: clocks, hashing, provenance.

use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch, as stored in every time column of the run store.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// SHA-256 of a file's bytes, hex encoded, with its size.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// SHA-256 of bytes, hex encoded.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The content identity of a file that cannot be read (see [`file_identity`]).
pub const UNREADABLE: &str = "unreadable";

/// A file's content identity for run configurations: `sha256:<hex>`, or [`UNREADABLE`] when it cannot
/// be read (the job then fails with the reader's own message).
pub fn file_identity(path: &Path) -> String {
    match sha256_file(path) {
        Ok((sha, _)) => format!("sha256:{sha}"),
        Err(_) => UNREADABLE.into(),
    }
}

/// Every string inside a JSON value (depth first).
pub fn json_strings(v: &serde_json::Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match v {
        serde_json::Value::String(s) => Box::new(std::iter::once(s.as_str())),
        serde_json::Value::Array(a) => Box::new(a.iter().flat_map(json_strings)),
        serde_json::Value::Object(m) => Box::new(m.values().flat_map(json_strings)),
        _ => Box::new(std::iter::empty()),
    }
}

/// Canonical JSON text: object keys sorted at every level, no whitespace. Two configurations that differ
/// only in key order have the same canonical form, hence the same hash.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn sort(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&map[k]));
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sort).collect())
            }
            other => other.clone(),
        }
    }
    // serde_json's Map keeps insertion order only with `preserve_order`; sorting explicitly makes the
    // result independent of that feature.
    sort(value).to_string()
}

/// A configuration as JSON, for run identities and presets. Configurations are plain structs of
/// numbers, strings, lists and enums, which always serialise; if one ever does not (a bug), this
/// stops loudly instead of letting a null stand in for it and silently change a run's identity.
pub fn config_json<T: serde::Serialize>(cfg: &T) -> serde_json::Value {
    match serde_json::to_value(cfg) {
        Ok(v) => v,
        Err(e) => panic!(
            "a configuration ({}) cannot be serialised: {e}",
            std::any::type_name::<T>()
        ),
    }
}

/// Hash of a configuration: SHA-256 of its canonical JSON.
pub fn config_hash(value: &serde_json::Value) -> String {
    sha256_hex(canonical_json(value).as_bytes())
}

/// This machine's host name.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = serde_json::json!({"lr": 0.01, "model": {"width": 64, "depth": 2}, "seed": 1});
        let b = serde_json::json!({"seed": 1, "model": {"depth": 2, "width": 64}, "lr": 0.01});
        assert_eq!(config_hash(&a), config_hash(&b));
        let c = serde_json::json!({"seed": 2, "model": {"depth": 2, "width": 64}, "lr": 0.01});
        assert_ne!(config_hash(&a), config_hash(&c));
    }

    #[test]
    fn sha256_of_known_bytes() {
        // NIST test vector for "abc".
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_utc(secs: f64) -> String {
    let s = secs.floor() as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A duration in seconds as `1h02m`, `3m05s` or `4.2s`.
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{secs:.1}s")
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0.0), "1970-01-01 00:00:00");
        // 2000-02-29 12:34:56 UTC = 951827696 (leap day).
        assert_eq!(format_utc(951_827_696.0), "2000-02-29 12:34:56");
        assert_eq!(format_utc(1_795_305_600.0), "2026-11-22 00:00:00");
        assert_eq!(format_duration(3725.0), "1h02m");
        assert_eq!(format_duration(65.0), "1m05s");
    }
}
