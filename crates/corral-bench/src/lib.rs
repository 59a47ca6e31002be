//! What the three benchmark binaries share, so their printed figures are computed
//! the same way and stay comparable.

pub mod stats;
