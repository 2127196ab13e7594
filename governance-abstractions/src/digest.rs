//! Content hashes over a canonical encoding (RFC 8785 JSON, SHA-256), so the
//! same content hashes the same whichever provider stored it.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{GovernanceError, ValidationProblem};

/// Lowercase hex SHA-256 of the RFC 8785 canonical JSON of `value`.
///
/// Serialization recurses: hash only values whose JSON nesting is bounded
/// (every value of this crate checks its payloads' depth before it hashes
/// them; for a `serde_json::Value` of your own, validate it first).
pub fn canonical_sha256<T: Serialize>(field: &str, value: &T) -> Result<String, GovernanceError> {
    canonical_sha256_len(field, value).map(|(hash, _)| hash)
}

/// [`canonical_sha256`] and the length of the canonical encoding it hashed.
pub(crate) fn canonical_sha256_len<T: Serialize>(field: &str, value: &T) -> Result<(String, usize), GovernanceError> {
    let bytes = canonical_json(value).map_err(|_| GovernanceError::validation(field, ValidationProblem::Malformed))?;
    Ok((hex(&Sha256::digest(&bytes)), bytes.len()))
}

/// The RFC 8785 encoding of `value`.
///
/// `serde_json_canonicalizer` is the reference; it re-parses every object
/// key to sort it, which made it most of a write's CPU time. Most values
/// need none of that: when serde_json's compact output is provably already
/// canonical (see `plain` in the source) it is used as is, and everything else goes
/// through the reference. The two agree byte for byte (tested). Like
/// [`canonical_sha256`], it recurses over `value`.
pub fn canonical_json<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let value = serde_json::to_value(value)?;
    if plain(&value) { serde_json::to_vec(&value) } else { serde_json_canonicalizer::to_vec(&value) }
}

/// True when serde_json writes `value` exactly as RFC 8785 does: object keys
/// already in ascending order (checked, whatever map type serde_json was
/// built with) and free of characters from U+D800 up (below it, UTF-8 byte
/// order is the UTF-16 order RFC 8785 sorts by), and every number an integer
/// of magnitude at most 2^53 (printed the same by both). Strings are escaped
/// alike by both: `\b \t \n \f \r \" \\` and other controls as `\u00xx`.
fn plain(value: &Value) -> bool {
    const SAFE: u64 = 1 << 53;
    match value {
        Value::Number(n) => {
            n.as_u64().is_some_and(|u| u <= SAFE) || n.as_i64().is_some_and(|i| i.unsigned_abs() <= SAFE)
        }
        Value::Array(items) => items.iter().all(plain),
        Value::Object(map) => {
            let mut previous: Option<&str> = None;
            map.iter().all(|(key, value)| {
                let ordered = previous.is_none_or(|p| p < key.as_str()) && key.chars().all(|c| (c as u32) < 0xD800);
                previous = Some(key);
                ordered && plain(value)
            })
        }
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The fast path must agree with the reference on everything it accepts.
    #[test]
    fn the_fast_path_matches_the_reference() {
        let mut cases = vec![
            json!(null),
            json!({"b": 1, "a": [true, false, null], "c": {"z": "x", "y": -9007199254740992_i64}}),
            json!({"ctl": "\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\t\"\\/", "uni": "é漢字😀", "é": 1, "e": 2, "E": 3}),
            json!([9007199254740992_u64, 0, -1, {"": ""}]),
            json!({"emoji😀": 1, "\u{e000}": 2, "\u{ffff}": 3, "a": 4}),
            json!({"float": 1.5, "big": 18446744073709551615_u64, "neg": -0.0, "exp": 1e21}),
        ];
        for n in 0..200u32 {
            let key: String = char::from_u32(0x20 + (n * 7919) % 0x2f00).map_or("k".into(), |c| c.to_string());
            cases.push(json!({ key: n, "k": [n, format!("{n}\u{1}")] }));
        }
        for value in cases {
            let reference = serde_json_canonicalizer::to_vec(&value).unwrap();
            assert_eq!(canonical_json(&value).unwrap(), reference, "{value}");
        }
        assert!(!plain(&json!({"x": 1.5})) && !plain(&json!({"😀": 1})) && plain(&json!({"a": {"b": [1]}})));
    }
}
