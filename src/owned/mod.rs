//! Owned, allocation-based conveniences (feature `std`), built on the no_std kernels.

mod sae;
pub(crate) mod trainer;

pub use sae::Sae;
pub(crate) use sae::saelens_penalty;
pub use trainer::{
    ArrayBatches, BatchSource, ToyBatches, TrainConfig, Trainer, inference_model, load_model,
    save_model,
};
