//! Backends: implementations of `candor_models::Backend`. The CPU backend is always built;
//! CUDA and C plugins are chosen with `--backend` (see `select`).
pub mod cpu;
pub mod cuda;
pub mod devices;
pub mod plugin;
pub mod select;
pub mod split;

pub use candor_models::backend::{Backend, DeviceInfo, OpDesc};
pub use select::BackendChoice;
