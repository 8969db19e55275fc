//! Durable state behind the [`Backend`](backend::Backend) trait.

pub mod backend;
pub mod schema;
