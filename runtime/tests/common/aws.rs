//! The S3/SQS/SNS emulator of `FLOW_TEST_AWS_ENDPOINT` (moto), for the
//! tests of `aws:` connections.

use flow_runtime::{AwsDef, Config, ConnectionAuth, ConnectionDef};

pub const ENDPOINT_VAR: &str = "FLOW_TEST_AWS_ENDPOINT";

/// The emulator's endpoint, or `None` (the test skipped).
pub fn endpoint(test: &str) -> Option<String> {
    flow_testkit::service_url(ENDPOINT_VAR, test)
}

/// The connection `cloud` to the emulator (any keys are accepted).
pub fn connections(_: &Config) -> Vec<ConnectionDef> {
    vec![ConnectionDef {
        name: "cloud",
        auth: ConnectionAuth::Aws(AwsDef {
            region: "us-east-1".into(),
            access_key: "AKIDTESTKEY".into(),
            secret_key: "test-secret-key".into(),
            endpoint: std::env::var(ENDPOINT_VAR).ok(),
        }),
        limit: None,
    }]
}
