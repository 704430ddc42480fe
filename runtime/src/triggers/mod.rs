//! Trigger adapters: each turns something from outside (an HTTP request,
//! a schedule tick, a file) into runs of the engine. Broker subscriptions
//! live with their publish steps in [`crate::brokers`].

pub mod email;
pub mod files;
pub mod http;
pub mod schedule;
