//! The build engine: context → plan → stages → image → outputs.

pub mod copy_dest;
