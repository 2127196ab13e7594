//! Content hashes over a canonical encoding (RFC 8785 JSON, SHA-256), so the
//! same content hashes the same whichever provider stored it.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{GovernanceError, ValidationProblem};

mod canonical;

/// Lowercase hex SHA-256 of the RFC 8785 canonical JSON of `value`.
///
/// Serialization recurses: hash only values whose JSON nesting is bounded
/// (every value of this crate checks its payloads' depth before it hashes
/// them; for a `serde_json::Value` of your own, validate it first).
pub fn canonical_sha256<T: Serialize>(field: &str, value: &T) -> Result<String, GovernanceError> {
    canonical_sha256_len(field, value).map(|(hash, _)| hash)
}

/// [`canonical_sha256`] and the length of the canonical encoding it hashed.
///
/// The canonical bytes go straight into the hasher as they are produced:
/// no `serde_json::Value` tree, no buffer of the whole encoding (only each
/// object's members are buffered, to be put in order).
pub(crate) fn canonical_sha256_len<T: Serialize>(field: &str, value: &T) -> Result<(String, usize), GovernanceError> {
    // Buffered: the serializer writes a few bytes at a time, and the hasher
    // is fastest fed whole blocks.
    let mut hashing = std::io::BufWriter::with_capacity(4096, Hashing { hasher: Sha256::new(), len: 0 });
    let malformed = || GovernanceError::validation(field, ValidationProblem::Malformed);
    canonical::write(&mut hashing, value).map_err(|_| malformed())?;
    let hashing = hashing.into_inner().map_err(|_| malformed())?;
    Ok((hex(&hashing.hasher.finalize()), hashing.len))
}

/// A SHA-256 hasher as an `io::Write`, counting what it was given.
struct Hashing {
    hasher: Sha256,
    len: usize,
}

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(bytes);
        self.len += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The RFC 8785 encoding of `value` (sorted member names, ECMAScript number
/// formatting, `JSON.stringify` string escapes). Like [`canonical_sha256`],
/// it recurses over `value`.
pub fn canonical_json<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    canonical::write(&mut out, value).map_err(<serde_json::Error as serde::ser::Error>::custom)?;
    Ok(out)
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
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    use super::*;

    /// Agrees with the reference byte for byte, and hashes what it encodes.
    fn agrees(value: &Value) {
        let reference = serde_json_canonicalizer::to_vec(value).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&canonical_json(value).unwrap()),
            String::from_utf8_lossy(&reference),
            "{value}"
        );
        let (hash, len) = canonical_sha256_len("v", value).unwrap();
        assert_eq!((hash, len), (hex(&Sha256::digest(&reference)), reference.len()), "{value}");
    }

    #[test]
    fn matches_the_reference_on_chosen_values() {
        let values = [
            json!(null),
            json!({"b": 1, "a": [true, false, null], "c": {"z": "x", "y": -9007199254740992_i64}}),
            json!({"ctl": "\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\t\"\\/", "uni": "é漢字😀", "é": 1, "e": 2, "E": 3}),
            json!([9007199254740992_u64, 9007199254740993_u64, 0, -1, {"": ""}]),
            json!({"emoji😀": 1, "\u{e000}": 2, "\u{ffff}": 3, "a": 4, "\u{10000}": 5}),
            json!({"float": 1.5, "big": 18446744073709551615_u64, "neg": -0.0, "exp": 1e21, "small": 1e-7}),
            json!([1e300, -1e-300, 0.1, 123456789012345680000.0, 4.35, 5e-324, 1.7976931348623157e308]),
            json!({"i": i64::MIN, "u": u64::MAX, "n": -9007199254740993_i64}),
        ];
        for value in &values {
            agrees(value);
        }
    }

    /// A small deterministic generator (xorshift): no dependency for what a
    /// few lines do.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn text(&mut self) -> String {
            const PIECES: [&str; 14] = [
                "a",
                "B",
                "é",
                "漢",
                "😀",
                "\u{e000}",
                "\u{ffff}",
                "\u{10ffff}",
                "\"",
                "\\",
                "\n",
                "\u{1}",
                "\u{7f}",
                "/",
            ];
            let len = self.below(6);
            (0..len).map(|_| PIECES[self.below(PIECES.len() as u64) as usize]).collect()
        }

        fn number(&mut self) -> Value {
            match self.below(5) {
                0 => json!(self.below(1000)),
                1 => json!(self.next()),
                2 => json!(-(self.next() as i64).abs() - 1),
                3 => {
                    let bits = self.next();
                    let float = f64::from_bits(bits);
                    if float.is_finite() { json!(float) } else { json!(0.5) }
                }
                _ => json!((self.below(2_000_000) as f64 - 1_000_000.0) / 1000.0),
            }
        }

        fn value(&mut self, depth: u32) -> Value {
            let kind = if depth == 0 { self.below(4) } else { self.below(6) };
            match kind {
                0 => Value::Null,
                1 => json!(self.below(2) == 0),
                2 => self.number(),
                3 => json!(self.text()),
                4 => Value::Array((0..self.below(5)).map(|_| self.value(depth - 1)).collect()),
                _ => Value::Object((0..self.below(6)).map(|_| (self.text(), self.value(depth - 1))).collect()),
            }
        }
    }

    #[test]
    fn matches_the_reference_on_generated_values() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            agrees(&rng.value(4));
        }
        // Deep, narrow values: every level an object or an array.
        for depth in [16, 64, 100] {
            let mut value = json!(rng.number());
            for level in 0..depth {
                value = if level % 2 == 0 { json!({ rng.text(): value, "k": level }) } else { json!([value, level]) };
            }
            agrees(&value);
        }
    }

    #[test]
    fn typed_values_hash_as_their_json_value_does() {
        #[derive(serde::Serialize)]
        enum Shape {
            Unit,
            Pair(u8, f32),
            Named { z: bool, a: Option<i8> },
            Wrapped(String),
        }
        #[derive(serde::Serialize)]
        struct Doc {
            zeta: Vec<Shape>,
            alpha: std::collections::HashMap<u32, &'static str>,
            bytes: &'static [u8],
            nan: f64,
        }
        let doc = Doc {
            zeta: vec![Shape::Unit, Shape::Pair(7, 0.1), Shape::Named { z: true, a: None }, Shape::Wrapped("w".into())],
            alpha: [(10, "ten"), (9, "nine")].into_iter().collect(),
            bytes: b"\x00\xff",
            nan: f64::NAN,
        };
        let through_value = serde_json::to_value(&doc).unwrap();
        assert_eq!(canonical_json(&doc).unwrap(), serde_json_canonicalizer::to_vec(&through_value).unwrap());
        assert_eq!(canonical_sha256("doc", &doc).unwrap(), canonical_sha256("doc", &through_value).unwrap());
    }
}
