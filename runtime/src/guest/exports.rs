//! The exports through which buffers and calls cross into an instance, and the cache that
//! finds each of them once per instance.
//!
//! Owns the buffers the host gives the guest from `netrun_alloc` (large results of imports,
//! blobs; small ones cross without an entry into the guest: [`crate::guest::handover`]) and
//! [`ExportCache`]: wasmtime looks an export up by
//! name and checks its type on every `get_export`, so an instance keeps what it found in its
//! store and every later call of the same export skips both. What it keeps is shared (`Arc`),
//! not cloned: a typed function's clone takes references on its type in the engine's
//! registry. Large copies share the CPU ([`chunks_sharing_cpu`]). It does not know which
//! function a name means or what a call's limits are (see [`crate::guest::instance`]).

use std::sync::Arc;

use netrun_abi::{codec, names};
use rustc_hash::FxHashMap;
use serde::Serialize;
use wasmtime::{AsContextMut, Caller, Instance, Memory, TypedFunc};

use crate::wire::spin;

/// How many bytes a large copy on a runtime thread copies between two chances it gives other
/// threads to run ([`chunks_sharing_cpu`]): about 25 µs of copying here.
const SHARE_CPU_EVERY: usize = 256 * 1024;

/// `bytes` in chunks of [`SHARE_CPU_EVERY`], letting any other thread ready to run on this
/// CPU run between two ([`spin::share_cpu`]): copying megabytes holds a CPU for a millisecond
/// or more.
pub fn chunks_sharing_cpu(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.chunks(SHARE_CPU_EVERY).enumerate().map(|(i, chunk)| {
        if i > 0 {
            spin::share_cpu();
        }
        chunk
    })
}

/// Copies `from` into `to`, of the same length, in chunks sharing the CPU.
pub fn copy_sharing_cpu(to: &mut [u8], from: &[u8]) {
    for (to, from) in to.chunks_mut(SHARE_CPU_EVERY).zip(chunks_sharing_cpu(from)) {
        to.copy_from_slice(from);
    }
}

/// The `len` bytes of `memory` (an instance's) at `ptr`, a buffer `netrun_alloc` returned.
fn allocated(memory: &mut [u8], ptr: i32, len: usize) -> wasmtime::Result<&mut [u8]> {
    let start = ptr as u32 as usize;
    memory
        .get_mut(start..start.saturating_add(len))
        .ok_or_else(|| {
            wasmtime::format_err!(
                "{} returned a buffer outside guest memory",
                names::EXPORT_ALLOC
            )
        })
}

/// An export with the call convention of functions and handlers: `(HELD, len) -> 0`, taking
/// its arguments with `net.input` and handing its outcome over with `net.output`.
pub type ExportFunc = TypedFunc<(i32, i32), i64>;

/// The exports through which buffers cross into and out of an instance.
#[derive(Clone)]
pub struct GuestExports {
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
}

impl GuestExports {
    /// The buffer exports of `instance`.
    pub fn of_instance<T: 'static>(
        mut store: impl AsContextMut<Data = T>,
        instance: &Instance,
    ) -> wasmtime::Result<Self> {
        let mut store = store.as_context_mut();
        Ok(GuestExports {
            memory: instance
                .get_memory(&mut store, names::EXPORT_MEMORY)
                .ok_or_else(|| wasmtime::format_err!("the module exports no memory"))?,
            alloc: instance.get_typed_func(&mut store, names::EXPORT_ALLOC)?,
        })
    }

    /// The buffer exports of the instance a host import was called from, looked up by name.
    pub fn of_caller<T: 'static>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Self> {
        Ok(GuestExports {
            memory: memory_of(caller)?,
            alloc: export_func(caller, names::EXPORT_ALLOC)?,
        })
    }

    /// The instance's linear memory.
    pub fn memory(&self) -> Memory {
        self.memory
    }

    /// Copies `len` bytes that `bytes_of` finds in the store's data into a fresh guest buffer
    /// from `netrun_alloc` (sharing the CPU, when large); returns `(ptr, len)`. The buffer then
    /// belongs to the guest.
    pub async fn give_from<T: Send + 'static>(
        &self,
        mut ctx: impl AsContextMut<Data = T>,
        len: usize,
        bytes_of: impl FnOnce(&T) -> &[u8],
    ) -> wasmtime::Result<(i32, i32)> {
        let (ptr, given) = self.alloc(&mut ctx, len).await?;
        let (memory, data) = self.memory.data_and_store_mut(&mut ctx);
        copy_sharing_cpu(allocated(memory, ptr, len)?, bytes_of(data));
        Ok((ptr, given))
    }

    /// Encodes `value` straight into a fresh guest buffer from `netrun_alloc` (sized first, so
    /// its bytes are written once, with no buffer of the host's in between); returns
    /// `(ptr, len)`. The buffer then belongs to the guest.
    pub async fn give_encoded<T: Send + 'static, V: Serialize + Sync + ?Sized>(
        &self,
        mut ctx: impl AsContextMut<Data = T>,
        value: &V,
    ) -> wasmtime::Result<(i32, i32)> {
        let size = codec::encoded_len(value)
            .map_err(|e| wasmtime::format_err!("cannot encode a value for the guest: {e}"))?;
        let (ptr, len) = self.alloc(&mut ctx, size).await?;
        let written = codec::encode_into_slice(value, self.buffer_mut(&mut ctx, ptr, size)?)
            .map_err(|e| wasmtime::format_err!("cannot encode a value for the guest: {e}"))?;
        if written != size {
            return Err(wasmtime::format_err!(
                "a value for the guest sized at {size} bytes encoded to {written}"
            ));
        }
        Ok((ptr, len))
    }

    /// A fresh guest buffer of `size` bytes from `netrun_alloc`, as `(ptr, len)`.
    async fn alloc<T: Send + 'static>(
        &self,
        mut ctx: impl AsContextMut<Data = T>,
        size: usize,
    ) -> wasmtime::Result<(i32, i32)> {
        let len = i32::try_from(size)
            .map_err(|_| wasmtime::format_err!("{size} bytes do not fit guest memory"))?;
        Ok((self.alloc.call_async(&mut ctx, len).await?, len))
    }

    /// The `len` bytes of guest memory at `ptr`, a buffer `netrun_alloc` returned.
    fn buffer_mut<'a, T: 'static>(
        &self,
        ctx: &'a mut impl AsContextMut<Data = T>,
        ptr: i32,
        len: usize,
    ) -> wasmtime::Result<&'a mut [u8]> {
        allocated(self.memory.data_mut(ctx), ptr, len)
    }
}

/// The memory of the instance a host import was called from.
pub fn memory_of<T: 'static>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    caller
        .get_export(names::EXPORT_MEMORY)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| {
            wasmtime::format_err!(
                "the module exports no memory named {:?}",
                names::EXPORT_MEMORY
            )
        })
}

/// The export `name` of the instance a host import was called from, as a typed function.
pub fn export_func<T: 'static, Params: wasmtime::WasmParams, Results: wasmtime::WasmResults>(
    caller: &mut Caller<'_, T>,
    name: &str,
) -> wasmtime::Result<TypedFunc<Params, Results>> {
    caller
        .get_export(name)
        .and_then(|e| e.into_func())
        .ok_or_else(|| wasmtime::format_err!("the module exports no function {name:?}"))?
        .typed(&*caller)
}

/// What one instance found among its exports: its buffer exports once it is initialized, and
/// each `(HELD, len) -> 0` export the first time it was called. Lives in the instance's
/// store, so it is dropped (and starts empty) with the instance.
#[derive(Default)]
pub struct ExportCache {
    buffers: Option<Arc<GuestExports>>,
    /// By export name: FxHash, as the names are the module's (see `cluster::router`).
    functions: FxHashMap<String, Arc<ExportFunc>>,
}

impl ExportCache {
    /// The buffer exports, once [`ExportCache::keep_buffers`] has been told them.
    pub fn buffers(&self) -> Option<&Arc<GuestExports>> {
        self.buffers.as_ref()
    }

    /// Remembers the buffer exports of this instance.
    pub fn keep_buffers(&mut self, exports: GuestExports) {
        self.buffers = Some(Arc::new(exports));
    }

    /// The function export `name`, if it was found before.
    pub fn function(&self, name: &str) -> Option<Arc<ExportFunc>> {
        self.functions.get(name).cloned()
    }

    /// Remembers the function export `name`; returns it, shared.
    pub fn keep_function(&mut self, name: &str, func: ExportFunc) -> Arc<ExportFunc> {
        let func = Arc::new(func);
        self.functions.insert(name.to_string(), func.clone());
        func
    }
}
