//! palisade-operator: the cluster controller. It accepts each profile generation after deep
//! validation, aggregates what node agents report into each profile's status, and holds a
//! profile's deletion while pods use it.

pub mod bindings;
pub mod controller;
pub mod leader;
pub mod learning_pods;
pub mod liveness;
pub mod metrics;
pub mod pods;
pub mod reports;
pub mod run;
pub mod status;
pub mod triggers;
pub mod validate;
pub mod webhook;

pub use run::{Args, run};

#[cfg(test)]
mod tests;
