//! Email triggers: `trigger email "MAILBOX" every D { url, after }`
//! (feature `email_in`).
//!
//! One poller task per email flow. At start-up and then every period it
//! connects over IMAP (`imaps://`, or `imap://` upgraded with STARTTLS),
//! selects the mailbox and takes the messages not seen, not deleted and
//! not marked failed, oldest first. For each, in turn, it fetches the bytes
//! (`BODY.PEEK[]`: reading does not set `\Seen`), stores a run with
//! [`Runtime::submit`] under the dedupe key `email:MESSAGE-ID`, and only
//! once that call returned (the run is durably recorded) moves the message
//! to `after:` (a mailbox, created when missing; `Processed` by default) or
//! flags it `\Seen` (`after: seen`). A crash between the two leaves the
//! message where it was: the next poll stores it again, the dedupe key
//! turns that into nothing new, and the message is moved then. The same
//! key makes replicas polling one mailbox safe (each may fetch a message,
//! one run is stored) and turns a message delivered again (the same
//! Message-ID) into nothing new. A message without a Message-ID is named
//! by the SHA-256 of its bytes.
//!
//! A message that is not mail (no header block, no `From:` address) is
//! stored as one failed run ([`Runtime::record_rejected`]) and left in the
//! mailbox with the keyword `$FlowFailed`, which later polls pass by.
//!
//! A failed poll (the server unreachable, a login refused, the store
//! down) is tried again with backoff (doubling from 500 ms to 30 s); logs
//! name the flow and the mailbox, never the URL or the password.

#[cfg(feature = "email_in")]
pub mod imap;
#[cfg(feature = "email_in")]
mod mime;

use tokio::task::JoinHandle;

use crate::engine::integration::{EmailTrigger, TriggerDef};
use crate::engine::Runtime;

/// Starts one poller per email flow.
pub(crate) fn start(rt: &Runtime) -> Vec<JoinHandle<()>> {
    rt.flows()
        .iter()
        .filter_map(|def| match &def.trigger {
            TriggerDef::Email(trigger) => spawn(rt, def.name, trigger),
            _ => None,
        })
        .collect()
}

#[cfg(feature = "email_in")]
fn spawn(rt: &Runtime, flow: &'static str, trigger: &EmailTrigger) -> Option<JoinHandle<()>> {
    let poller = poller::Poller {
        rt: rt.clone(),
        flow,
        trigger: trigger.clone(),
    };
    Some(tokio::spawn(poller.run()))
}

#[cfg(not(feature = "email_in"))]
fn spawn(_: &Runtime, flow: &'static str, trigger: &EmailTrigger) -> Option<JoinHandle<()>> {
    tracing::error!(
        flow,
        mailbox = trigger.mailbox,
        "email trigger not started: this binary was built without the `email_in` feature"
    );
    None
}

#[cfg(feature = "email_in")]
mod poller {
    use serde_json::{json, Value};

    use super::imap::{Mailbox, Target, FAILED_KEYWORD};
    use super::mime;
    use crate::engine::integration::{EmailAfter, EmailTrigger};
    use crate::engine::Runtime;

    /// How much of a refused message its failed run keeps, to look at.
    const REJECTED_EXCERPT: usize = 64 * 1024;

    /// The poller of one flow.
    pub(super) struct Poller {
        pub rt: Runtime,
        pub flow: &'static str,
        pub trigger: EmailTrigger,
    }

    /// What became of one message.
    enum Stored {
        /// Its run is recorded (now or before, under the same Message-ID).
        Run,
        /// It is not mail: recorded as a failed run.
        Rejected,
    }

    impl Poller {
        /// Polls until shutdown: every period after a good poll, sooner
        /// (with backoff) after a failed one.
        pub(super) async fn run(self) {
            tracing::info!(
                flow = self.flow,
                mailbox = self.trigger.mailbox,
                every_ms = self.trigger.every.as_millis() as u64,
                "polling mailbox"
            );
            let mut failures = 0u32;
            loop {
                let result = tokio::select! {
                    r = self.poll() => r,
                    _ = self.rt.shutdown_started() => return,
                };
                let wait = match result {
                    Ok(()) => {
                        failures = 0;
                        self.trigger.every
                    }
                    Err(error) => {
                        failures += 1;
                        let wait =
                            crate::core::reconnect::backoff(failures).min(self.trigger.every);
                        let error = crate::core::reconnect::redact_urls(&error, &self.trigger.url);
                        tracing::warn!(
                            flow = self.flow,
                            mailbox = self.trigger.mailbox,
                            error = %self.rt.redactor().redact(&error),
                            retry_in_ms = wait.as_millis() as u64,
                            "email poll failed; trying again"
                        );
                        wait
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.rt.shutdown_started() => return,
                }
            }
        }

        /// One poll: every pending message stored, then moved or flagged.
        async fn poll(&self) -> Result<(), String> {
            let target = Target::parse(&self.trigger.url)?;
            let mut mailbox = Mailbox::open(&target, self.trigger.mailbox).await?;
            if let EmailAfter::MoveTo(to) = self.trigger.after {
                mailbox.ensure_exists(to).await?;
            }
            let pending = mailbox.pending().await?;
            if !pending.is_empty() {
                tracing::debug!(
                    flow = self.flow,
                    mailbox = self.trigger.mailbox,
                    messages = pending.len(),
                    "new mail"
                );
            }
            for uid in pending {
                // Gone: another replica handled it meanwhile.
                let Some(raw) = mailbox.fetch(uid).await? else {
                    continue;
                };
                match self.store(&raw).await? {
                    Stored::Run => match self.trigger.after {
                        EmailAfter::MoveTo(to) => mailbox.move_to(uid, to).await?,
                        EmailAfter::Seen => mailbox.add_flag(uid, "\\Seen").await?,
                    },
                    Stored::Rejected => mailbox.mark_failed(uid).await?,
                }
            }
            mailbox.close().await;
            Ok(())
        }

        /// Stores the run of one message (or its failed run); `Ok` once it
        /// is durably recorded.
        async fn store(&self, raw: &[u8]) -> Result<Stored, String> {
            let store_error =
                |e: crate::store::StoreError| format!("cannot store a message's run: {e}");
            match mime::message_value(raw) {
                Ok(message) => {
                    let key = format!(
                        "email:{}",
                        message["message_id"].as_str().unwrap_or_default()
                    );
                    let s = self
                        .rt
                        .submit(self.flow, json!({ "message": message }), Some(key))
                        .await
                        .map_err(store_error)?;
                    tracing::debug!(flow = self.flow, execution_id = %s.execution_id, duplicate = s.duplicate, "message stored");
                    Ok(Stored::Run)
                }
                Err(reason) => {
                    let key = format!("email:{}", mime::message_id(None, raw));
                    let error = format!(
                        "a message in `{}` was rejected: {reason}; it stays there, flagged {FAILED_KEYWORD}",
                        self.trigger.mailbox
                    );
                    let excerpt = &raw[..raw.len().min(REJECTED_EXCERPT)];
                    let trigger = json!({
                        "message": Value::Null,
                        "mailbox": self.trigger.mailbox,
                        "raw": String::from_utf8_lossy(excerpt),
                    });
                    self.rt
                        .record_rejected(self.flow, trigger, Some(key), &error)
                        .await
                        .map_err(store_error)?;
                    Ok(Stored::Rejected)
                }
            }
        }
    }
}
