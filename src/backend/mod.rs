//! Backends: implementations of `candor_models::Backend`. The CPU backend is always built;
//! CUDA and C plugins arrive behind their own issues.
pub mod cpu;

pub use candor_models::backend::{Backend, DeviceInfo, OpDesc};
