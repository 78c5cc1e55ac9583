//! Owned, allocation-based conveniences (feature `std`), built on the no_std kernels.

mod tied;

pub use tied::TiedSae;
