//! Minidumps to readable stacks, on the machine where the crash happened.

pub mod model;

pub use model::{Frame, Module, SymbolSource, Symbolicated, Thread};
