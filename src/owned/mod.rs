//! Owned, allocation-based conveniences (feature `std`), built on the no_std kernels.
//!
//! - [`Sae`]: a model of any architecture owning its tensors (private, so its views
//!   always match its dimensions), with `encode`/`decode` returning `Result`; loaded
//!   from and saved to SAELens folders by [`crate::format::saelens`].
//! - [`Trainer`] with a [`TrainConfig`]: optimizer state, dead-latent counters,
//!   schedules, held-out evaluation and checkpoints that resume bit for bit; minibatches
//!   from a [`BatchSource`] ([`ArrayBatches`] over activations, [`ToyBatches`] for the
//!   toy benchmark); [`inference_model`] for the model as SAELens would save it.
//! - [`save_model`] / [`load_model`]: the crate's own file for the tied seed model.

mod sae;
pub(crate) mod trainer;

pub use sae::Sae;
pub(crate) use sae::saelens_penalty;
pub use trainer::{
    ArrayBatches, BatchSource, ToyBatches, TrainConfig, Trainer, inference_model, load_model,
    save_model,
};
