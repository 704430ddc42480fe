//! Deploy flows: run once per new version of the integration, with the
//! endpoints the third-party app should call; remove flows, run when the
//! integration is retired (`BINARY undeploy`), with the same endpoints.

use super::*;

impl Runtime {
    /// The trigger value of deploy flows: `{ version, endpoints }`.
    pub fn deploy_trigger(&self) -> Value {
        let endpoints: Map<String, Value> = self
            .inner
            .flows
            .iter()
            .filter(|f| f.trigger.route().is_some())
            .filter_map(|f| {
                self.endpoint(f.name, None)
                    .ok()
                    .map(|u| (f.name.to_string(), Value::String(u)))
            })
            .collect();
        json!({ "version": self.inner.integration.version(), "endpoints": endpoints })
    }

    /// Runs every deploy flow in order, in the foreground; when all succeed
    /// (or there are none) records this build as deployed.
    pub async fn deploy(&self) -> Result<Vec<Execution>, RunError> {
        let done = self.run_lifecycle_flows("deploy").await?;
        self.record_deployed(&self.inner.integration.build_id())
            .await?;
        Ok(done)
    }

    /// Runs every remove flow in order, in the foreground; when all succeed
    /// (or there are none) records that no build is deployed, so that the
    /// next `serve` or `deploy` runs the deploy flows again.
    pub async fn undeploy(&self) -> Result<Vec<Execution>, RunError> {
        let done = self.run_lifecycle_flows("remove").await?;
        self.record_deployed("").await?;
        Ok(done)
    }

    /// The flows whose trigger is `kind` (`deploy` or `remove`), one after
    /// another; the first that fails stops the others.
    async fn run_lifecycle_flows(&self, kind: &str) -> Result<Vec<Execution>, RunError> {
        let mut done = Vec::new();
        for def in self.inner.flows.clone() {
            if def.trigger.kind() != kind {
                continue;
            }
            let exec = self
                .run_inline(new_execution_id(), def.name, self.deploy_trigger())
                .await
                .map_err(|e| RunError::new(e.to_string()))?;
            if exec.status == Status::Failed {
                return Err(RunError {
                    message: format!(
                        "{kind} flow `{}` failed: {}",
                        def.name,
                        exec.error.clone().unwrap_or_default()
                    ),
                    step: exec.error_step.clone(),
                });
            }
            done.push(exec);
        }
        Ok(done)
    }

    async fn record_deployed(&self, build: &str) -> Result<(), RunError> {
        self.inner
            .store
            .set_deployed_version(build)
            .await
            .map_err(|e| RunError::new(e.to_string()))
    }

    /// Runs the deploy flows if the store's deployed build differs from this one.
    pub async fn deploy_if_new(&self) -> Result<bool, RunError> {
        let current = self.inner.integration.build_id();
        let deployed = self
            .inner
            .store
            .deployed_version()
            .await
            .map_err(|e| RunError::new(e.to_string()))?;
        if deployed.as_deref() == Some(current.as_str()) {
            return Ok(false);
        }
        tracing::info!(version = %self.inner.integration.version(), "new version: running deploy flows");
        self.deploy().await?;
        Ok(true)
    }
}
