//! The `xline` server binary (being written).
fn main() {}
