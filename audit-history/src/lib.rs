//! Not implemented yet: the evidence recorder, redaction, integrity and export (issue 5). This crate has no API.
