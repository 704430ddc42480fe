//! Errors that flow code and stdlib components return.
//!
//! * [`RunError`] ends a run as failed: `fail "x"` in the language, a failed
//!   step after its retries, a run-time type error (`as`), arithmetic overflow.
//! * [`StepError`] is what one attempt of a stdlib component returns; the
//!   executor decides from [`StepError::retryable`] whether to try again.
//! * [`crate::core::schema::DecodeError`] names the JSON path of a mismatch; it
//!   converts into a `RunError`.

use std::fmt;

/// Why a run failed. Generated code returns it with `?` or
/// `return Err(RunError::fail("reason"))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    /// Human-readable message (already free of secrets when it leaves the process).
    pub message: String,
    /// Identity of the step that failed (`adjust[1]`), if a step failed.
    pub step: Option<String>,
}

impl RunError {
    /// A run-time error not tied to a step.
    pub fn new(message: impl Into<String>) -> Self {
        RunError {
            message: message.into(),
            step: None,
        }
    }

    /// The error for the statement `fail "reason"`.
    pub fn fail(reason: impl Into<String>) -> Self {
        RunError::new(reason)
    }

    /// A run-time error raised by the step with identity `step`.
    pub fn in_step(step: impl Into<String>, message: impl Into<String>) -> Self {
        RunError {
            message: message.into(),
            step: Some(step.into()),
        }
    }

    /// The value `error` holds inside an `on failure` block:
    /// `{ message, step, execution_id }`.
    pub fn to_value(&self, execution_id: &str) -> serde_json::Value {
        serde_json::json!({
            "message": self.message,
            "step": self.step,
            "execution_id": execution_id,
        })
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "step {step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RunError {}

impl From<crate::core::schema::DecodeError> for RunError {
    fn from(e: crate::core::schema::DecodeError) -> Self {
        RunError::new(e.to_string())
    }
}

/// The failure of one attempt of a stdlib component called as a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// What went wrong (e.g. `POST http://erp/stock: HTTP 503 Service Unavailable`).
    pub message: String,
    /// Whether another attempt may succeed (network errors, 5xx, timeouts).
    pub retryable: bool,
    /// When the next attempt may start, if the other side said
    /// (`Retry-After`): replaces the step's backoff for that attempt.
    pub retry_after: Option<std::time::Duration>,
}

impl StepError {
    /// An error worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// An error that another attempt cannot fix (bad arguments, a body that
    /// does not match its `as:` type).
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepError {}

impl From<RunError> for StepError {
    fn from(e: RunError) -> Self {
        StepError::permanent(e.message)
    }
}

/// An error and its causes on one line, each cause once (a client's top
/// message alone often says little: "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}
