//! The MultiArchBuild controller: one BuildRequest per platform and
//! generation, their results aggregated, the index published once every
//! platform has a digest.

pub mod controller;
pub mod decide;
pub mod publish;
