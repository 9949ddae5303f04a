//! Cross-crate scenarios on real services. One binary, one module per concern.

mod activity;
mod agreement;
mod blobs;
mod data_path;
mod golem_sdk;
mod grammar_cli;
mod hostile;
mod identity_store;
mod jobs;
mod market;
mod money;
mod negotiation;
mod network;
mod node;
mod payment;
mod referee;
mod restarts;
mod routing;
mod schema;
mod services;
mod shutdown;
mod web_service;
