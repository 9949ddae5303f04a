//! Cross-crate scenarios on real services. One binary, one module per concern.

mod activity;
mod agent;
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
mod money_hostile;
mod money_scope;
mod negotiation;
mod network;
mod node;
mod payment;
mod payment_input;
mod referee;
mod restarts;
mod routing;
mod schema;
mod services;
mod shutdown;
mod web_service;
