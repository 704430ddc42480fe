//! The pest parser generated from `grammar/flow.pest`. Private to
//! [`crate::syntax`]: no pest type leaves the module.

use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "../grammar/flow.pest"]
pub(super) struct FlowParser;
