//! The identity registry's domain: hubs, policies, devices, modules and generated values.

pub mod hub;
pub mod keys;
pub mod model;
