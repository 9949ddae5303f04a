//! Cross-crate scenarios on real services. One binary, one module per concern.

mod identity_store;
mod node;
mod services;
