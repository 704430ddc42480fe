//! The step registry: the stdlib components (and broker publish steps) a
//! run can call, by qualified name. The engine knows no component: the
//! host fills a registry at start-up (`crate::host::step_registry`) and
//! hands it to [`crate::Runtime::new`]; `flowc test` replaces some entries
//! with mocks.

use std::collections::HashMap;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::core::error::{RunError, StepError};
use crate::engine::ctx::{Args, StepCall};

/// An effectful component callable as a step (`http.post`, `file.write`).
pub type StepFn = fn(StepCall) -> BoxFuture<'static, Result<Value, StepError>>;

/// A pure function (`json.encode`, `time.now`); also callable as a step.
pub type PureFn = fn(&Args) -> Result<Value, RunError>;

/// Step and pure functions by qualified name.
#[derive(Clone, Default)]
pub struct StepRegistry {
    steps: HashMap<&'static str, StepFn>,
    pure: HashMap<&'static str, PureFn>,
}

impl StepRegistry {
    /// An empty registry.
    pub fn new() -> StepRegistry {
        StepRegistry::default()
    }

    /// Registers (or replaces) the step `name`.
    pub fn step(&mut self, name: &'static str, f: StepFn) -> &mut StepRegistry {
        self.steps.insert(name, f);
        self
    }

    /// Registers (or replaces) the pure function `name`.
    pub fn pure(&mut self, name: &'static str, f: PureFn) -> &mut StepRegistry {
        self.pure.insert(name, f);
        self
    }

    /// The step `name`.
    pub fn step_fn(&self, name: &str) -> Option<StepFn> {
        self.steps.get(name).copied()
    }

    /// The pure function `name`.
    pub fn pure_fn(&self, name: &str) -> Option<PureFn> {
        self.pure.get(name).copied()
    }
}
