//! The BuildRequest controller: one builder Job per attempt, pinned to a
//! native node, retried up to `retries`, its result read back into status.

pub mod controller;
pub mod decide;
pub mod render;
