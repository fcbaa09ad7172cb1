//! Plugin loader and pipeline: builds inputs, filters, routes and outputs from a config.

pub mod loader;
pub mod registry;
