//! The custom-device backend: a shared library that implements candor's C ABI
//! (`kernels/include/candor_device.h`) is loaded at run time and drives the model's ops; what it
//! does not support runs on the CPU backend, counted per op. See docs/plugins.md.
mod backend;
mod buffer;
pub mod conformance;
mod fallback;
pub mod ffi;
mod loader;
mod tensors;

pub use backend::PluginBackend;
pub use buffer::DeviceBuffer;
pub use fallback::{summary as fallback_summary, FallbackCounts, Op};
pub use loader::{Plugin, PluginError};
pub use tensors::{PluginKvCache, PluginTensor, PluginWeight};

/// The reference plugin built with this candor (`kernels/plugins/reference`), when the build
/// made one (not on Windows).
pub fn reference_plugin_path() -> Option<std::path::PathBuf> {
    option_env!("CANDOR_REFERENCE_PLUGIN").map(std::path::PathBuf::from)
}
