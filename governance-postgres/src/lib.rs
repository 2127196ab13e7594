//! Not implemented yet: the PostgreSQL provider on sqlx (issue 3). This crate has no API.
