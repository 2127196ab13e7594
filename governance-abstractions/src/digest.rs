//! Content hashes over a canonical encoding (RFC 8785 JSON, SHA-256), so the
//! same content hashes the same whichever provider stored it.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{GovernanceError, ValidationProblem};

/// Lowercase hex SHA-256 of the RFC 8785 canonical JSON of `value`.
pub fn canonical_sha256<T: Serialize>(field: &str, value: &T) -> Result<String, GovernanceError> {
    let bytes = serde_json_canonicalizer::to_vec(value)
        .map_err(|_| GovernanceError::validation(field, ValidationProblem::Malformed))?;
    Ok(hex(&Sha256::digest(&bytes)))
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
