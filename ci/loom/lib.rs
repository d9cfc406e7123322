//! Compiles the engine's doorbell (the publish / sleep / wake hand-off between senders and a
//! core) on its own, so that its `loom` model runs without building the whole crate.
#![allow(dead_code)]

#[path = "../../src/engine/doorbell.rs"]
mod doorbell;
