//! Guest memory the host may write into: the `netrun_alloc` / `netrun_free` exports, and the
//! taking over of buffers the host wrote into. (Small buffers do not cross so: the guest takes
//! what the host holds for it, and hands its outcomes over, through imports; see
//! [`crate::host`].)
//!
//! Every buffer crossing the boundary is a `Box<[u8]>` of exactly its length, so whichever side
//! ends up owning it can free it knowing only `(ptr, len)`. Pointers are 32-bit: this module
//! means something only on `wasm32` (on other targets nothing calls it). A buffer of length 0 owns nothing:
//! its pointer is never dereferenced or freed, so the host may pass any pointer with it.
//!
//! The two exports are plain `#[no_mangle]` functions of this crate: a `cdylib` app exports
//! them from its dependency as it is, so the macros do not emit them (and an app cannot end up
//! with two).

use netrun_abi::names;

/// Allocates `len` bytes for the host to write into; exported as `netrun_alloc`. A negative
/// `len` is taken as 0.
///
/// The bytes are not zeroed: the host writes every one of them before the guest reads any
/// (it allocates only to copy a buffer in), so zeroing would be a wasted pass over each
/// argument and reply. Nothing in the guest reads the buffer until [`take`] turns it into
/// bytes, after the host's write.
#[unsafe(no_mangle)]
pub extern "C" fn netrun_alloc(len: i32) -> i32 {
    let buffer = Box::<[u8]>::new_uninit_slice(len.max(0) as usize);
    Box::into_raw(buffer) as *mut u8 as usize as i32
}

/// Frees a buffer from [`netrun_alloc`]; exported as `netrun_free`.
///
/// # Safety
///
/// `(ptr, len)` must be a buffer allocated by this module and not yet freed (any pointer will
/// do when `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn netrun_free(ptr: i32, len: i32) {
    // SAFETY: the caller hands back a buffer made by `netrun_alloc`, with its length.
    drop(unsafe { take(ptr, len) });
}

/// Takes ownership of a buffer made by [`netrun_alloc`].
///
/// # Safety
///
/// Unless `len` is 0, `(ptr, len)` must be a live buffer from `netrun_alloc` of
/// exactly `len` bytes, which the caller owns from now on, and (from `netrun_alloc`) whose
/// every byte the host has written.
pub unsafe fn take(ptr: i32, len: i32) -> Vec<u8> {
    let len = len as u32 as usize;
    if len == 0 {
        return Vec::new();
    }
    let slice = std::ptr::slice_from_raw_parts_mut(ptr as u32 as usize as *mut u8, len);
    // SAFETY: guaranteed by the caller: the slice is a leaked Box<[u8]> of this length.
    unsafe { Box::from_raw(slice) }.into_vec()
}

/// Takes ownership of a packed buffer the host returned.
///
/// # Safety
///
/// `packed` must come from a host import that returns a buffer from `netrun_alloc`.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub unsafe fn take_packed(packed: i64) -> Vec<u8> {
    let (ptr, len) = names::unpack(packed);
    // SAFETY: guaranteed by the caller.
    unsafe { take(ptr as i32, len as i32) }
}
