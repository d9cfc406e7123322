//! Compiles the engine's doorbell (the publish / sleep / wake hand-off between senders and a
//! core) and a send queue's owner (the hand-off between a producer's direct send and the
//! core's sends) on their own, so that their `loom` models run without building the whole
//! crate.
#![allow(dead_code)]

#[path = "../../src/engine/doorbell.rs"]
mod doorbell;

#[path = "../../src/engine/send/queue/owner.rs"]
mod owner;
