//! The step registry: the stdlib components (and broker publish steps) a
//! run can call, by qualified name. The engine knows no component: the
//! host fills a registry at start-up (`crate::host::step_registry`) and
//! hands it to [`crate::Runtime::new`]; `flowc test` replaces some entries
//! with mocks.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::core::error::{RunError, StepError};
use crate::core::fnv::{FnvHashMap, FnvHashSet};
use crate::engine::ctx::{Args, StepCall, DEFAULT_ATTEMPT_TIMEOUT};

/// An effectful component callable as a step (`http.post`, `file.write`).
pub type StepFn = fn(StepCall) -> BoxFuture<'static, Result<Value, StepError>>;

/// A pure function (`json.encode`, `time.now`); also callable as a step.
pub type PureFn = fn(&Args) -> Result<Value, RunError>;

/// Step and pure functions by qualified name (looked up twice for every
/// step: FNV, as the names are the program's).
#[derive(Clone, Default)]
pub struct StepRegistry {
    steps: FnvHashMap<&'static str, StepFn>,
    pure: FnvHashMap<&'static str, PureFn>,
    /// Steps that bound their own attempts (see [`StepRegistry::self_timed_step`]).
    self_timed: FnvHashSet<&'static str>,
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

    /// Registers the step `name` whose attempts bound themselves: a
    /// streamed transfer fails when it stops moving, not after a fixed
    /// time, so that moving gigabytes over a slow link needs no `timeout`
    /// on the step. Without one, its attempts have no overall limit.
    pub fn self_timed_step(&mut self, name: &'static str, f: StepFn) -> &mut StepRegistry {
        self.self_timed.insert(name);
        self.step(name, f)
    }

    /// The limit of one attempt of step `name`: the step statement's
    /// `timeout` if it has one, else [`DEFAULT_ATTEMPT_TIMEOUT`], or none
    /// for a self-timed step.
    pub fn attempt_limit(&self, name: &str, given: Option<Duration>) -> Option<Duration> {
        given.or((!self.self_timed.contains(name)).then_some(DEFAULT_ATTEMPT_TIMEOUT))
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::FutureExt as _;

    fn nothing(_: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
        async { Ok(Value::Null) }.boxed()
    }

    #[test]
    fn self_timed_steps_have_no_default_limit() {
        let mut r = StepRegistry::new();
        r.step("http.get", nothing)
            .self_timed_step("file.move", nothing);
        let given = Some(Duration::from_secs(5));
        assert_eq!(
            r.attempt_limit("http.get", None),
            Some(DEFAULT_ATTEMPT_TIMEOUT)
        );
        assert_eq!(r.attempt_limit("file.move", None), None);
        assert_eq!(r.attempt_limit("file.move", given), given);
        assert_eq!(r.attempt_limit("http.get", given), given);
        assert!(r.step_fn("file.move").is_some());
    }
}
