//! Input validation shared by every provider, so the same input is refused
//! the same way everywhere, before any storage is touched.

use std::io;

use serde_json::Value;

use crate::{GovernanceError, ValidationProblem};

/// Documented size limits. Every backend enforces exactly these.
pub mod limits {
    /// Ids, keys, names and codes: bytes of UTF-8.
    pub const MAX_IDENTIFIER_BYTES: usize = 255;
    /// Free text (intent, reasons, comments): bytes of UTF-8.
    pub const MAX_TEXT_BYTES: usize = 16 * 1024;
    /// Each JSON document (metadata, request/response payloads), serialized.
    pub const MAX_JSON_BYTES: usize = 2 * 1024 * 1024;
    /// Items in a list (tags, reason codes, approval requirements).
    pub const MAX_LIST_ITEMS: usize = 64;
    /// Principals in a delegation chain.
    pub const MAX_DELEGATION_DEPTH: usize = 16;
    /// Nesting of arrays and objects in a JSON document: every array or
    /// object is a level, empty ones too, so `[[]]` is 2 deep. MariaDB's
    /// `JSON_VALID` refuses 32 levels; 31 store on every backend.
    pub const MAX_JSON_DEPTH: usize = 31;
    /// Records in one history append.
    pub const MAX_BATCH_RECORDS: usize = 1_000;
    /// Serialized bytes of one history append, all records together: one
    /// statement must fit MySQL's `max_allowed_packet` (16 MiB by default on
    /// MariaDB) with room to spare.
    pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
    /// Integers that must survive canonical JSON (RFC 8785 uses IEEE doubles).
    pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
}

use limits::*;

fn problem(field: &str, problem: ValidationProblem) -> GovernanceError {
    GovernanceError::validation(field, problem)
}

fn text_within(field: &str, value: &str, max: usize) -> Result<(), GovernanceError> {
    if value.len() > max {
        return Err(problem(field, ValidationProblem::TooLong { max, actual: value.len() }));
    }
    if value.contains('\0') {
        return Err(problem(field, ValidationProblem::ContainsNul));
    }
    Ok(())
}

/// A non-empty identifier within [`MAX_IDENTIFIER_BYTES`] with no NUL.
pub(crate) fn identifier(field: &str, value: &str) -> Result<(), GovernanceError> {
    if value.is_empty() {
        return Err(problem(field, ValidationProblem::Empty));
    }
    text_within(field, value, MAX_IDENTIFIER_BYTES)
}

/// An optional identifier: checked like [`identifier`] when present.
pub(crate) fn optional_identifier(field: &str, value: Option<&str>) -> Result<(), GovernanceError> {
    value.map_or(Ok(()), |v| identifier(field, v))
}

/// Free text within [`MAX_TEXT_BYTES`] with no NUL (may be empty).
pub(crate) fn text(field: &str, value: &str) -> Result<(), GovernanceError> {
    text_within(field, value, MAX_TEXT_BYTES)
}

/// A list of identifiers within [`MAX_LIST_ITEMS`].
pub(crate) fn identifier_list(field: &str, values: &[String]) -> Result<(), GovernanceError> {
    list_len(field, values.len(), MAX_LIST_ITEMS)?;
    values.iter().try_for_each(|v| identifier(field, v))
}

/// A list length within `max`.
pub(crate) fn list_len(field: &str, len: usize, max: usize) -> Result<(), GovernanceError> {
    if len > max {
        return Err(problem(field, ValidationProblem::TooMany { max, actual: len }));
    }
    Ok(())
}

/// An integer that canonical JSON and every SQL backend keep exactly.
pub(crate) fn safe_integer(field: &str, value: i64) -> Result<(), GovernanceError> {
    if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&value) {
        return Err(problem(field, ValidationProblem::OutOfRange));
    }
    Ok(())
}

/// A JSON document within [`MAX_JSON_BYTES`] and [`MAX_JSON_DEPTH`], with no
/// NUL in any key or string and no integer beyond [`MAX_SAFE_INTEGER`] (the
/// canonical encoding used for hashing keeps only doubles).
///
/// The depth is checked first and without recursion, before anything that
/// recurses (serialization, hashing, comparison) touches the document, so a
/// hostile document cannot exhaust the stack.
pub(crate) fn json(field: &str, value: &Value) -> Result<(), GovernanceError> {
    // One walk checks the depth, the content and a bound on the encoded
    // length. A content problem waits until the whole document is known to
    // be within the depth limit, so a document with both reports the depth.
    let mut content: Option<ValidationProblem> = None;
    let mut bound = 0usize;
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = pending.pop() {
        let children: &mut dyn Iterator<Item = &Value> = match value {
            Value::Null | Value::Bool(_) => {
                bound = bound.saturating_add(5);
                continue;
            }
            Value::Number(n) => {
                if !n.is_f64() && n.as_i64().is_none_or(|i| i.unsigned_abs() > MAX_SAFE_INTEGER as u64) {
                    content.get_or_insert(ValidationProblem::OutOfRange);
                }
                // Counted exactly (no allocation): with serde_json's
                // `arbitrary_precision`, which any crate in a build can
                // enable, a number is written with all its digits.
                let mut counter = ByteCounter(0);
                let _ = serde_json::to_writer(&mut counter, n);
                bound = bound.saturating_add(counter.0);
                continue;
            }
            Value::String(s) => {
                if s.contains('\0') {
                    content.get_or_insert(ValidationProblem::ContainsNul);
                }
                bound = bound.saturating_add(string_bound(s));
                continue;
            }
            Value::Array(items) => {
                bound = bound.saturating_add(2 + items.len());
                &mut items.iter()
            }
            Value::Object(map) => {
                for key in map.keys() {
                    if key.contains('\0') {
                        content.get_or_insert(ValidationProblem::ContainsNul);
                    }
                    bound = bound.saturating_add(string_bound(key)).saturating_add(2);
                }
                bound = bound.saturating_add(2);
                &mut map.values()
            }
        };
        let depth = depth + 1;
        if depth > MAX_JSON_DEPTH {
            return Err(problem(field, ValidationProblem::TooDeep { max: MAX_JSON_DEPTH }));
        }
        pending.extend(children.map(|child| (child, depth)));
    }
    if let Some(content) = content {
        return Err(problem(field, content));
    }
    // The bound is what the document could take at most; only a document
    // that might exceed the limit is serialized to count it exactly.
    if bound <= MAX_JSON_BYTES {
        return Ok(());
    }
    let mut counter = ByteCounter(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut counter, value);
    if counter.0 > MAX_JSON_BYTES {
        return Err(problem(field, ValidationProblem::TooLong { max: MAX_JSON_BYTES, actual: counter.0 }));
    }
    Ok(())
}

/// The most bytes serde_json writes for a string: its quotes, and each byte
/// at worst escaped as `\u00XX`.
fn string_bound(s: &str) -> usize {
    s.len().saturating_mul(6).saturating_add(2)
}

/// Refuses a document nested deeper than [`MAX_JSON_DEPTH`], iteratively and
/// stopping at the first level past the limit.
pub(crate) fn json_depth(field: &str, value: &Value) -> Result<(), GovernanceError> {
    json_depth_within(field, value, MAX_JSON_DEPTH)
}

/// How deep a document may be to be hashed or compared: what a thread's
/// stack survives with room to spare. Checking stored content against its
/// hash uses this, not [`MAX_JSON_DEPTH`], so content stored under an older,
/// larger limit still checks.
pub(crate) const HASHABLE_DEPTH: usize = 128;

// A record built from validated evidence is hashed without a second depth
// walk: that relies on every storable document being hashable.
const _: () = assert!(MAX_JSON_DEPTH <= HASHABLE_DEPTH);

/// [`json_depth`] against another limit.
pub(crate) fn json_depth_within(field: &str, value: &Value, max: usize) -> Result<(), GovernanceError> {
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = pending.pop() {
        let children: &mut dyn Iterator<Item = &Value> = match value {
            Value::Array(items) => &mut items.iter(),
            Value::Object(map) => &mut map.values(),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > max {
            return Err(problem(field, ValidationProblem::TooDeep { max }));
        }
        pending.extend(children.map(|child| (child, depth)));
    }
    Ok(())
}

/// Makes `value` safe to drop on any stack: serde_json drops (and clones,
/// compares, serializes) documents recursively, so one nested a hundred
/// thousand deep would overflow a thread's stack. Subtrees below a safe depth
/// are taken apart iteratively; shallow documents are only walked.
pub(crate) fn defuse(value: &mut Value) {
    fn walk(value: &mut Value, depth: usize) {
        const SAFE_DEPTH: usize = 64;
        let children: &mut dyn Iterator<Item = &mut Value> = match value {
            Value::Array(items) => &mut items.iter_mut(),
            Value::Object(map) => &mut map.values_mut(),
            _ => return,
        };
        if depth < SAFE_DEPTH {
            children.for_each(|child| walk(child, depth + 1));
            return;
        }
        let mut pending: Vec<Value> = vec![std::mem::take(value)];
        while let Some(mut node) = pending.pop() {
            match &mut node {
                Value::Array(items) => pending.append(items),
                Value::Object(map) => pending.extend(std::mem::take(map).into_iter().map(|(_, child)| child)),
                _ => {}
            }
        }
    }
    walk(value, 0);
}

/// Undoes a database's re-encoding of large floats: PostgreSQL's `jsonb`
/// returns `1.5e16` as the integer `15000000000000000`. Validation admits no
/// integer beyond [`MAX_SAFE_INTEGER`], so any such integer read back was a
/// float, and turning it back into one is lossless. Providers call this on
/// every JSON document they read.
pub fn restore_stored_json(value: &mut Value) {
    let mut pending: Vec<&mut Value> = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Number(n)
                if !n.is_f64() && n.as_i64().is_none_or(|i| i.unsigned_abs() > MAX_SAFE_INTEGER as u64) =>
            {
                if let Some(float) = n.as_f64().and_then(serde_json::Number::from_f64) {
                    *n = float;
                }
            }
            Value::Array(items) => pending.extend(items.iter_mut()),
            Value::Object(map) => pending.extend(map.values_mut()),
            _ => {}
        }
    }
}

/// Counts serialized bytes without allocating them.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn restoring_stored_json_turns_only_unsafe_integers_back_into_floats() {
        let mut value = json!({
            "big": 15_000_000_000_000_000_u64,
            "negative": -15_000_000_000_000_000_i64,
            "safe": MAX_SAFE_INTEGER,
            "float": 1.5,
            "nested": [{ "x": 9_007_199_254_740_993_u64 }, "text", null, true],
        });
        restore_stored_json(&mut value);
        assert_eq!(value["big"], json!(1.5e16));
        assert!(value["big"].is_f64() && value["negative"].is_f64());
        assert_eq!(value["negative"], json!(-1.5e16));
        assert!(value["safe"].is_i64(), "a safe integer stays an integer");
        assert_eq!(value["float"], json!(1.5));
        assert!(value["nested"][0]["x"].is_f64(), "nested values are restored too");
        assert_eq!(value["nested"][1], json!("text"));
        let mut plain = json!([1, 2, { "a": -3 }]);
        restore_stored_json(&mut plain);
        assert_eq!(plain, json!([1, 2, { "a": -3 }]));
    }

    #[test]
    fn the_json_limit_counts_the_encoding_exactly_near_it() {
        let too_long = |r: Result<(), GovernanceError>| {
            matches!(r, Err(GovernanceError::Validation { problem: ValidationProblem::TooLong { .. }, .. }))
        };
        // Quotes included: exactly at the limit, then one byte over.
        let at = Value::String("z".repeat(MAX_JSON_BYTES - 2));
        assert!(json("f", &at).is_ok());
        let over = Value::String("z".repeat(MAX_JSON_BYTES - 1));
        assert!(too_long(json("f", &over)));
        // Control characters that could each take six bytes, but `\n` takes
        // two: the bound is over the limit, the encoding is not.
        let escaped = Value::String("\n".repeat((MAX_JSON_BYTES - 2) / 2));
        assert!(json("f", &escaped).is_ok());
        let escaped = Value::String("\u{1}".repeat(MAX_JSON_BYTES / 6 + 1));
        assert!(too_long(json("f", &escaped)), "each \\u0001 is six bytes");
        let many = Value::Array((0..MAX_JSON_BYTES / 2).map(|_| json!(0)).collect());
        assert!(too_long(json("f", &many)), "n zeros and n - 1 commas and brackets");
        let many = Value::Array((0..MAX_JSON_BYTES / 2 - 1).map(|_| json!(0)).collect());
        assert!(json("f", &many).is_ok());
    }

    #[test]
    fn a_document_too_deep_reports_its_depth_before_its_content() {
        let mut value = json!({ "k\u{0}": 1 });
        for _ in 0..MAX_JSON_DEPTH {
            value = Value::Array(vec![value]);
        }
        assert!(matches!(
            json("f", &value),
            Err(GovernanceError::Validation { problem: ValidationProblem::TooDeep { .. }, .. })
        ));
        let shallow = json!([{ "k": "a\u{0}" }, 9_007_199_254_740_993_i64]);
        assert!(matches!(
            json("f", &shallow),
            Err(GovernanceError::Validation { problem: ValidationProblem::OutOfRange, .. })
        ));
    }

    #[test]
    fn depth_counts_every_container_and_stops_at_the_limit() {
        let mut value = Value::Null;
        for _ in 0..MAX_JSON_DEPTH {
            value = Value::Array(vec![value]);
        }
        assert!(json_depth("f", &value).is_ok());
        let deeper = json!({ "k": value });
        assert!(matches!(
            json_depth("f", &deeper),
            Err(GovernanceError::Validation { problem: ValidationProblem::TooDeep { max: MAX_JSON_DEPTH }, .. })
        ));
        assert!(json_depth("f", &json!(1)).is_ok() && json_depth("f", &json!([])).is_ok());
    }

    #[test]
    fn defused_values_drop_on_a_small_stack() {
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let mut value = Value::Null;
                for _ in 0..200_000 {
                    value = Value::Array(vec![value]);
                }
                defuse(&mut value);
                drop(value);
                // Objects in objects, and arrays and objects mixed, the same.
                let mut objects = Value::Null;
                for n in 0..200_000 {
                    let mut map = serde_json::Map::new();
                    map.insert("k".into(), objects);
                    objects = if n % 3 == 0 { Value::Array(vec![Value::Object(map)]) } else { Value::Object(map) };
                }
                defuse(&mut objects);
                drop(objects);
                let mut shallow = json!({ "a": [1, { "b": 2 }] });
                defuse(&mut shallow);
                assert_eq!(shallow, json!({ "a": [1, { "b": 2 }] }), "a shallow value is left as it was");
            })
            .unwrap();
        handle.join().expect("no stack overflow");
    }
}
