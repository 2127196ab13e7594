//! Not implemented yet: the SeaORM provider for SQLite, PostgreSQL and MySQL (issue 4). This crate has no API.
