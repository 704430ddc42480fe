//! Deploy flows: run once per new version of the integration, with the
//! endpoints the third-party app should call.

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
        let mut done = Vec::new();
        for def in self.inner.flows.clone() {
            if !matches!(def.trigger, TriggerDef::Deploy) {
                continue;
            }
            let exec = self
                .run_inline(new_execution_id(), def.name, self.deploy_trigger())
                .await
                .map_err(|e| RunError::new(e.to_string()))?;
            if exec.status == Status::Failed {
                return Err(RunError {
                    message: format!(
                        "deploy flow `{}` failed: {}",
                        def.name,
                        exec.error.clone().unwrap_or_default()
                    ),
                    step: exec.error_step.clone(),
                });
            }
            done.push(exec);
        }
        self.inner
            .store
            .set_deployed_version(&self.inner.integration.build_id())
            .await
            .map_err(|e| RunError::new(e.to_string()))?;
        Ok(done)
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
