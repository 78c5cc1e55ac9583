//! Owned, allocation-based conveniences (feature `std`), built on the no_std kernels.

mod sae;
mod tied;
pub(crate) mod trainer;

pub use sae::Sae;
pub(crate) use sae::saelens_penalty;
pub use tied::TiedSae;
pub use trainer::{
    ArrayBatches, BatchSource, ToyBatches, TrainConfig, Trainer, load_model, save_model,
};
