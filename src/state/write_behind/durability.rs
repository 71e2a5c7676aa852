//! Waiting for durability, and closing.

use super::WriteBehind;
use super::writer::{check_state, report};
use crate::error::{Error, Result};

impl WriteBehind {
    /// Resolves once every write queued before the call is durable; reports background failures.
    pub async fn wait_for_all(&self) -> Result<()> {
        let target = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.last_seq
        };
        self.wait_durable(target).await?;
        self.check()
    }

    /// Resolves once the writes about `invocation_id` queued before the call are durable.
    pub async fn wait_for_invocation(&self, invocation_id: &str) -> Result<()> {
        let target = {
            let mut st = self.inner.lock();
            check_state(&mut st)?;
            st.overlay
                .invocations
                .get(invocation_id)
                .map_or(0, |p| p.last_seq)
        };
        self.wait_durable(target).await?;
        self.check()
    }

    /// Number of queued writes not yet durable.
    pub fn pending(&self) -> u64 {
        let st = self.inner.lock();
        st.last_seq - *self.inner.durable.borrow()
    }

    pub(super) async fn wait_durable(&self, target: u64) -> Result<()> {
        if target == 0 {
            return Ok(());
        }
        let mut rx = self.inner.durable.subscribe();
        rx.wait_for(|durable| *durable >= target)
            .await
            .map(|_| ())
            .map_err(|_| Error::Store("the state backend's writer stopped".into()))
    }

    /// Writes everything queued, stops the writer and closes the store. Later calls fail with a
    /// clear `Store` error. Background failures not yet reported are returned.
    pub async fn close(&self) -> Result<()> {
        let target = {
            let mut st = self.inner.lock();
            if st.closing {
                return Ok(());
            }
            st.closing = true;
            st.last_seq
        };
        self.inner.wake.notify_one();
        let flushed = self.wait_durable(target).await;
        let failures = {
            let mut st = self.inner.lock();
            st.closed = true;
            std::mem::take(&mut st.failures)
        };
        self.inner.store.close().await;
        flushed?;
        report(failures)
    }

    /// Whether [`WriteBehind::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closing
    }
}
