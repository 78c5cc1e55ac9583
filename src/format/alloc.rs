//! Fallible allocation for the `std` layer: a buffer too large for the memory available
//! is an [`Error::Alloc`] naming it, never an abort of the whole process.

use crate::error::{Error, Result};
use std::vec::Vec;

/// An empty vector with room for exactly `len` elements of `T`.
///
/// # Errors
/// [`Error::Alloc`] naming `what` (with the bytes requested, `usize::MAX` if that
/// count itself overflows) if the allocator refuses.
pub(crate) fn try_with_capacity<T>(len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::Alloc {
        arg: what,
        bytes: len.saturating_mul(size_of::<T>()),
    })?;
    Ok(v)
}

/// `len` zeros, or [`Error::Alloc`] naming `what` if they cannot be allocated.
///
/// # Errors
/// As [`try_with_capacity`].
pub(crate) fn try_zeroed_f32(len: usize, what: &'static str) -> Result<Vec<f32>> {
    let mut v = try_with_capacity(len, what)?;
    v.resize(len, 0.0);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sizes_are_zeroed() {
        let v = try_zeroed_f32(1000, "x").unwrap();
        assert_eq!(v.len(), 1000);
        assert!(v.iter().all(|&x| x == 0.0));
        assert!(try_zeroed_f32(0, "x").unwrap().is_empty());
    }

    #[test]
    fn overflowing_sizes_are_errors() {
        // More bytes than the address space: capacity overflow, reported, no abort.
        assert_eq!(
            try_zeroed_f32(usize::MAX / 2, "m"),
            Err(Error::Alloc {
                arg: "m",
                bytes: usize::MAX
            })
        );
        let e = try_with_capacity::<u64>(usize::MAX / 4, "indptr").unwrap_err();
        assert_eq!(
            std::format!("{e}"),
            "`indptr`: cannot allocate memory (the size overflows)"
        );
    }

    // Miri reports a request this large as resource exhaustion instead of returning
    // null; on 32-bit targets every size the allocator could be asked for might fit.
    #[test]
    #[cfg(all(target_pointer_width = "64", not(miri)))]
    fn sizes_the_allocator_refuses_are_errors() {
        // Representable (2^62 bytes) but far beyond any machine: the allocator itself
        // returns null, reported as an error naming the buffer and its size.
        let len = 1usize << 60;
        let e = try_zeroed_f32(len, "optimizer state").unwrap_err();
        assert_eq!(
            e,
            Error::Alloc {
                arg: "optimizer state",
                bytes: 1 << 62
            }
        );
        assert!(
            std::format!("{e}").starts_with(
                "`optimizer state`: cannot allocate 4611686018427387904 bytes (4398046511104 MiB)"
            ),
            "{e}"
        );
    }
}
