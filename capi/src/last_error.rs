//! The message of the last failed call, per thread (std builds), without allocating.
//!
//! Without `std` there are no threads to keep apart and no thread-locals: the message
//! is then a fixed text per status code (no shared mutable state).

use crate::SaeStatus;
use core::ffi::c_char;
use core::fmt;

/// Longest message kept, in bytes (longer ones are cut at a character boundary).
#[cfg(feature = "std")]
const CAP: usize = 512;

#[cfg(feature = "std")]
std::thread_local! {
    static LAST: core::cell::RefCell<[u8; CAP]> = const { core::cell::RefCell::new([0; CAP]) };
}

/// Writes into a fixed buffer, cutting at a UTF-8 boundary, always leaving room for NUL.
#[cfg(feature = "std")]
struct Cut<'a> {
    buf: &'a mut [u8],
    len: usize,
}

#[cfg(feature = "std")]
impl fmt::Write for Cut<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 1 - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Record the message of a failure with this status.
#[cfg(feature = "std")]
pub(crate) fn set(_status: SaeStatus, msg: fmt::Arguments<'_>) {
    // `try_with`: during thread teardown there is nowhere to put it.
    let _ = LAST.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            let mut w = Cut {
                buf: &mut b[..],
                len: 0,
            };
            let _ = fmt::write(&mut w, msg);
            let end = w.len;
            b[end] = 0;
        }
    });
}

#[cfg(not(feature = "std"))]
static LAST_STATUS: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(0);

#[cfg(not(feature = "std"))]
pub(crate) fn set(status: SaeStatus, _msg: fmt::Arguments<'_>) {
    LAST_STATUS.store(status as i32, core::sync::atomic::Ordering::Relaxed);
}

/// The message of the most recent failed call on the calling thread (a NUL-terminated
/// UTF-8 string naming the argument at fault, e.g. "`x`: expected length 96, got 95"),
/// or "" if no call has failed on this thread. Like `errno`, a successful call does not
/// clear it. The pointer stays valid until the thread ends; the text changes with the
/// next failure on this thread. Never NULL.
///
/// In builds without `std`, the text is a fixed description of the last status code.
#[unsafe(no_mangle)]
pub extern "C" fn sae_last_error() -> *const c_char {
    #[cfg(feature = "std")]
    {
        LAST.try_with(|b| b.as_ptr().cast::<c_char>().cast_const())
            .unwrap_or(c"(thread is exiting)".as_ptr())
    }
    #[cfg(not(feature = "std"))]
    {
        let s = LAST_STATUS.load(core::sync::atomic::Ordering::Relaxed);
        let text = match s {
            0 => c"",
            1 => c"NULL pointer with a non-zero length",
            2 => c"a buffer length does not match its shape",
            3 => c"a dimension is zero",
            4 => c"scratch too small",
            5 => c"CSR capacity too small",
            6 => c"a value is out of range",
            7 => c"a non-finite value",
            8 => c"a size overflows",
            11 => c"bad model handle",
            12 => c"misaligned or overlapping buffer",
            14 => c"not available without std",
            _ => c"error",
        };
        text.as_ptr()
    }
}
