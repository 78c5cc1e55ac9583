//! File formats (feature `std`): `.npy` activation arrays, SciPy CSR `.npz` sparse codes
//! and SAELens SAE folders.
//!
//! Each reader validates every size it reads against the file's length before it
//! allocates, and returns an error (never panics) on malformed input.

pub(crate) mod alloc;
pub mod npy;
pub mod npz;
pub mod saelens;
