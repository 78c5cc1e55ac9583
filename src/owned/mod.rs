//! Owned, allocation-based conveniences (feature `std`), built on the no_std kernels.

mod tied;
pub(crate) mod trainer;
mod untied;

pub use tied::TiedSae;
pub use trainer::{
    ArrayBatches, BatchSource, ToyBatches, TrainConfig, TrainSae, Trainer, load_model, save_model,
};
pub use untied::{ActivationKind, UntiedSae};
