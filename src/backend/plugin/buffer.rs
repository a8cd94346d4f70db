//! Device memory owned by Rust: one `DeviceBuffer` per plugin allocation, freed exactly once in
//! `Drop`. Tensors share buffers through `Arc`, so a buffer can neither leak while candor holds
//! no handle to it nor be freed twice (the plugin-fault tests count live allocations).
use super::ffi::{self, CandorBuffer, CandorDtype, CandorTensor};
use super::loader::{Plugin, PluginError};
use std::sync::Arc;

pub struct DeviceBuffer {
    plugin: Arc<Plugin>,
    handle: CandorBuffer,
    bytes: u64,
}

// SAFETY: the handle is an opaque token only passed back to the plugin, under its lock.
unsafe impl Send for DeviceBuffer {}
unsafe impl Sync for DeviceBuffer {}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({:p}, {} bytes)", self.handle, self.bytes)
    }
}

impl DeviceBuffer {
    pub fn alloc(plugin: &Arc<Plugin>, bytes: u64) -> Result<DeviceBuffer, PluginError> {
        let mut handle: CandorBuffer = std::ptr::null_mut();
        plugin.call("buffer_alloc", |api| match api.buffer_alloc {
            // SAFETY: a valid out-pointer.
            Some(f) => unsafe { f(bytes, &mut handle) },
            None => 1,
        })?;
        Ok(DeviceBuffer {
            plugin: plugin.clone(),
            handle,
            bytes,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn handle(&self) -> CandorBuffer {
        self.handle
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Copy `src` to the buffer at byte `offset`.
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<(), PluginError> {
        self.plugin.call("upload", |api| match api.upload {
            // SAFETY: `src` is valid for its length during the call.
            Some(f) => unsafe { f(self.handle, offset, src.as_ptr().cast(), src.len() as u64) },
            None => 1,
        })
    }

    /// Copy the buffer's bytes at `offset` into `dst`.
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), PluginError> {
        self.plugin.call("download", |api| match api.download {
            // SAFETY: `dst` is valid for writes of its length during the call.
            Some(f) => unsafe {
                f(
                    self.handle,
                    offset,
                    dst.as_mut_ptr().cast(),
                    dst.len() as u64,
                )
            },
            None => 1,
        })
    }

    /// Fill the buffer with zero bytes (in bounded chunks, so no host copy of its size).
    pub fn zero(&self) -> Result<(), PluginError> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(self.bytes) as usize];
        let mut at = 0;
        while at < self.bytes {
            let n = CHUNK.min(self.bytes - at) as usize;
            self.write(at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// A descriptor of the whole buffer as a contiguous tensor of `shape`.
    pub fn tensor(&self, dtype: CandorDtype, shape: &[usize]) -> CandorTensor {
        describe(self.handle, dtype, shape)
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let handle = self.handle;
        let freed = self
            .plugin
            .call("buffer_free", |api| match api.buffer_free {
                // SAFETY: the handle came from buffer_alloc and this is its only owner.
                Some(f) => unsafe { f(handle) },
                None => 1,
            });
        if let Err(e) = freed {
            // Nothing to give the error to from Drop; the plugin keeps its memory.
            tracing::warn!(error = %e, "device buffer not freed");
        }
    }
}

/// A contiguous row-major descriptor (`shape` of rank 1..=4; checked by callers).
pub fn describe(buffer: CandorBuffer, dtype: CandorDtype, shape: &[usize]) -> CandorTensor {
    let mut t = CandorTensor {
        buffer,
        offset: 0,
        dtype,
        rank: shape.len().min(ffi::MAX_RANK) as u32,
        shape: [0; ffi::MAX_RANK],
        strides: [0; ffi::MAX_RANK],
    };
    let mut stride = 1i64;
    for i in (0..t.rank as usize).rev() {
        t.shape[i] = shape[i] as i64;
        t.strides[i] = stride;
        stride *= shape[i] as i64;
    }
    t
}
