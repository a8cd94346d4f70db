//! Loading a device plugin: open the shared library, find `candor_device_get_api`, and check the
//! table it returns before any of its functions is called. Every failure is a typed error.
use super::ffi::{self, CandorDeviceApi, CandorOpDesc, CandorStatus};
use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("device plugin {path}: no such file")]
    NotFound { path: PathBuf },
    #[error("device plugin {path}: cannot load it as a shared library: {reason}")]
    NotALibrary { path: PathBuf, reason: String },
    #[error(
        "device plugin {path}: it does not export `{symbol}`, so it is not a candor device plugin"
    )]
    MissingEntryPoint { path: PathBuf, symbol: &'static str },
    #[error("device plugin {path}: `candor_device_get_api({major}, {minor})` returned NULL (the plugin cannot serve this ABI version)")]
    NullTable {
        path: PathBuf,
        major: u32,
        minor: u32,
    },
    #[error("device plugin {path}: it speaks ABI {found}.x, this candor speaks {expected}.x; rebuild the plugin against candor's candor_device.h")]
    WrongMajor {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("device plugin {path}: its function table is {size} bytes, at least {min} are needed (struct_size too small)")]
    TableTooSmall {
        path: PathBuf,
        size: u32,
        min: usize,
    },
    #[error("device plugin {path}: the table lacks the required function `{function}`")]
    MissingFunction {
        path: PathBuf,
        function: &'static str,
    },
    #[error("device plugin `{device}`: {op} failed ({status}): {message}")]
    Call {
        device: String,
        op: &'static str,
        status: &'static str,
        message: String,
    },
}

/// A loaded and checked plugin. Every call into it goes through `lock`, so a plugin need not be
/// thread-safe (the header promises this).
pub struct Plugin {
    api: CandorDeviceApi,
    path: PathBuf,
    name: String,
    vendor: String,
    lock: Mutex<()>,
    // Declared last so it is dropped last: the table's pointers point into the library.
    _lib: libloading::Library,
}

// SAFETY: the table's raw pointers are immutable data and functions of the loaded library, which
// `Plugin` keeps loaded; all calls are serialised by `lock`.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("name", &self.name)
            .finish()
    }
}

/// A C string from the plugin, or "" for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid while the library is loaded.
unsafe fn c_text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl Plugin {
    /// Load the library at `path` and check its table.
    ///
    /// Loading runs the library's initialisers: only load plugins you trust, as with any
    /// shared library.
    pub fn load(path: &Path) -> Result<Plugin, PluginError> {
        let path = path.to_path_buf();
        if !path.is_file() {
            return Err(PluginError::NotFound { path });
        }
        // SAFETY: see above; a file that is not a library is refused by the dynamic loader.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
            // libloading's message is "dlopen failed"; the loader's own words are its source.
            let reason = match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            };
            PluginError::NotALibrary {
                path: path.clone(),
                reason,
            }
        })?;
        // SAFETY: the symbol, when present, has the ABI's signature (the header declares it).
        let get_api = unsafe { lib.get::<ffi::GetApiFn>(ffi::ENTRY_POINT.as_bytes()) }
            .map(|s| *s)
            .map_err(|_| PluginError::MissingEntryPoint {
                path: path.clone(),
                symbol: ffi::ENTRY_POINT,
            })?;
        // SAFETY: calling the plugin's entry point with plain integers.
        let table = unsafe { get_api(ffi::ABI_MAJOR, ffi::ABI_MINOR) };
        if table.is_null() {
            return Err(PluginError::NullTable {
                path,
                major: ffi::ABI_MAJOR,
                minor: ffi::ABI_MINOR,
            });
        }
        // SAFETY: a non-NULL table starts with struct_size and the two version words (16 bytes).
        let (size, major) = unsafe { ((*table).struct_size, (*table).abi_major) };
        if major != ffi::ABI_MAJOR {
            return Err(PluginError::WrongMajor {
                path,
                found: major,
                expected: ffi::ABI_MAJOR,
            });
        }
        if (size as usize) < ffi::MIN_STRUCT_SIZE {
            return Err(PluginError::TableTooSmall {
                path,
                size,
                min: ffi::MIN_STRUCT_SIZE,
            });
        }
        let api = without_newer_functions(copy_table(table, size as usize));
        let required: [(&'static str, bool); 7] = [
            ("last_error", api.last_error.is_some()),
            ("supports_op", api.supports_op.is_some()),
            ("buffer_alloc", api.buffer_alloc.is_some()),
            ("buffer_free", api.buffer_free.is_some()),
            ("upload", api.upload.is_some()),
            ("download", api.download.is_some()),
            ("synchronize", api.synchronize.is_some()),
        ];
        if let Some((function, _)) = required.iter().find(|(_, present)| !present) {
            return Err(PluginError::MissingFunction { path, function });
        }
        // SAFETY: strings of the loaded library (NULL allowed).
        let (name, vendor) = unsafe { (c_text(api.name), c_text(api.vendor)) };
        Ok(Plugin {
            name: if name.is_empty() {
                path.display().to_string()
            } else {
                name
            },
            vendor,
            api,
            path,
            lock: Mutex::new(()),
            _lib: lib,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn vendor(&self) -> &str {
        &self.vendor
    }
    /// (major, minor) the plugin reports.
    pub fn abi(&self) -> (u32, u32) {
        (self.api.abi_major, self.api.abi_minor)
    }
    /// Whether the plugin was written against ABI minor `minor` or later: the codes, flags and
    /// dtypes that minor added may be asked of it (a plugin of an older minor may never have
    /// checked `variant` or `flags`, so it is not asked about codes it cannot know).
    pub fn speaks_minor(&self, minor: u32) -> bool {
        self.api.abi_minor >= minor
    }
    pub fn dtype_mask(&self) -> u64 {
        self.api.dtype_mask
    }
    /// Whether the device keeps buffers of this ABI dtype.
    pub fn has_dtype(&self, dtype: ffi::CandorDtype) -> bool {
        dtype < 64 && self.api.dtype_mask & (1u64 << dtype) != 0
    }

    /// Whether MXFP4 weights go to the device as they are (ABI 1.1 and the dtype's bit).
    pub fn keeps_mxfp4(&self) -> bool {
        self.speaks_minor(1) && self.has_dtype(ffi::DTYPE_MXFP4)
    }

    /// What `candor devices` and result documents say of the plugin: its ABI version and the
    /// weight types it keeps.
    pub fn features(&self) -> Vec<String> {
        let (major, minor) = self.abi();
        let mut features = vec![format!("abi {major}.{minor}")];
        features.extend(
            ffi::WEIGHT_DTYPES
                .iter()
                .filter(|d| self.has_dtype(ffi::dtype_code(**d)))
                .map(|d| d.to_string()),
        );
        if self.keeps_mxfp4() {
            features.push("MXFP4".into());
        }
        features
    }

    /// The checked table (functions past the plugin's struct_size are `None`).
    pub(super) fn api(&self) -> &CandorDeviceApi {
        &self.api
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave the plugin half-called (calls are atomic
        // from Rust's side), so a poisoned lock is still usable.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (total, free) device memory, when the plugin reports it.
    pub fn memory(&self) -> Option<(u64, u64)> {
        let f = self.api.memory_info?;
        let (mut total, mut free) = (0u64, 0u64);
        let _g = self.guard();
        // SAFETY: two valid out-pointers.
        let s = unsafe { f(&mut total, &mut free) };
        (s == ffi::OK).then_some((total, free))
    }

    /// The plugin's answer for `op`; false when it has no such function.
    pub fn supports(&self, op: &CandorOpDesc) -> bool {
        let Some(f) = self.api.supports_op else {
            return false;
        };
        let _g = self.guard();
        // SAFETY: a valid descriptor for the duration of the call.
        unsafe { f(op) == 1 }
    }

    /// Run `f` (one call into the plugin) under the lock; a status other than OK becomes an
    /// error carrying the plugin's `last_error` message.
    pub fn call(
        &self,
        op: &'static str,
        f: impl FnOnce(&CandorDeviceApi) -> CandorStatus,
    ) -> Result<(), PluginError> {
        let _g = self.guard();
        let status = f(&self.api);
        if status == ffi::OK {
            return Ok(());
        }
        let message = match self.api.last_error {
            // SAFETY: last_error returns NULL or a string valid until the next call, and we
            // still hold the lock.
            Some(le) => unsafe { c_text(le()) },
            None => String::new(),
        };
        Err(PluginError::Call {
            device: self.name.clone(),
            op,
            status: ffi::status_name(status),
            message: if message.is_empty() {
                "(the plugin gave no message)".into()
            } else {
                message
            },
        })
    }
}

/// The table without the functions of minors later than the one it reports: a table that
/// says 1.0 but runs longer (built against a newer header) has them dropped, so candor calls
/// no function whose contract the plugin did not claim, and asks `is_some` alone of them.
fn without_newer_functions(mut api: CandorDeviceApi) -> CandorDeviceApi {
    if api.abi_minor < 1 {
        api.paged_attention_sinks = None;
        api.heads_linear = None;
    }
    if api.abi_minor < 2 {
        api.layer_norm = None;
    }
    if api.abi_minor < 5 {
        api.paged_attention_alibi = None;
        api.clamp = None;
        api.xielu = None;
        api.quantize_rows = None;
        api.mul_sigmoid = None;
    }
    api
}

/// Copy the first `size` bytes of the plugin's table into a zeroed mirror: fields the plugin
/// does not have (a table from an older minor version) read as NULL / None.
fn copy_table(table: *const CandorDeviceApi, size: usize) -> CandorDeviceApi {
    let n = size.min(std::mem::size_of::<CandorDeviceApi>());
    let mut api = std::mem::MaybeUninit::<CandorDeviceApi>::zeroed();
    // SAFETY: the plugin promises `size` readable bytes at `table`; we copy at most our own
    // struct's size. All-zero bytes are a valid CandorDeviceApi (NULL pointers, None functions).
    unsafe {
        std::ptr::copy_nonoverlapping(table as *const u8, api.as_mut_ptr() as *mut u8, n);
        api.assume_init()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn heads_linear(
        _: *const ffi::CandorTensor,
        _: *const ffi::CandorTensor,
        _: *const ffi::CandorTensor,
    ) -> CandorStatus {
        ffi::OK
    }

    /// A table reporting minor 0 keeps no 1.1 function, whatever its tail holds; one reporting
    /// 1.1 keeps them.
    #[test]
    fn a_1_0_table_has_no_1_1_functions() {
        // SAFETY: all-zero bytes are a valid table (NULL pointers, None functions).
        let mut api: CandorDeviceApi = unsafe { std::mem::zeroed() };
        api.heads_linear = Some(heads_linear);
        assert!(without_newer_functions(api).heads_linear.is_none());
        api.abi_minor = 1;
        assert!(without_newer_functions(api).heads_linear.is_some());
    }

    unsafe extern "C" fn layer_norm(
        _: *const ffi::CandorTensor,
        _: *const ffi::CandorTensor,
        _: *const ffi::CandorTensor,
        _: f32,
        _: *const ffi::CandorTensor,
    ) -> CandorStatus {
        ffi::OK
    }

    /// The same for 1.2's LayerNorm: dropped from a table that reports 1.1.
    #[test]
    fn a_1_1_table_has_no_1_2_functions() {
        // SAFETY: all-zero bytes are a valid table (NULL pointers, None functions).
        let mut api: CandorDeviceApi = unsafe { std::mem::zeroed() };
        api.layer_norm = Some(layer_norm);
        api.abi_minor = 1;
        assert!(without_newer_functions(api).layer_norm.is_none());
        api.abi_minor = 2;
        assert!(without_newer_functions(api).layer_norm.is_some());
    }
}
