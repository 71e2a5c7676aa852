//! Wake-ups for idle workers: `LISTEN headrace_outbox`, relayed to the store's `Notify`.

use sqlx::postgres::PgPool;
use std::sync::Weak;
use tokio::sync::Notify;

/// Channel notified when outbox rows are inserted, so idle workers can wake without polling. The
/// statement-level trigger of migration `0010_outbox_notify` is its one sender: it fires for
/// every client's inserts (the stores', Django's, raw SQL), so no statement notifies itself.
pub const NOTIFY_CHANNEL: &str = "headrace_outbox";

/// Forwards `NOTIFY headrace_outbox` to `work` until the store (and so `work`) is dropped,
/// reconnecting after connection failures. Polling covers any gap.
pub(super) async fn relay_notifications(pool: PgPool, work: Weak<Notify>) {
    const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);
    while work.strong_count() > 0 {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => listener,
                Err(err) => {
                    tracing::warn!(target: "headrace.outbox", %err, "LISTEN failed; polling until it works");
                    tokio::time::sleep(RECHECK).await;
                    continue;
                }
            },
            Err(err) => {
                tracing::warn!(target: "headrace.outbox", %err, "LISTEN connection failed; polling until it works");
                tokio::time::sleep(RECHECK).await;
                continue;
            }
        };
        loop {
            match tokio::time::timeout(RECHECK, listener.recv()).await {
                Ok(Ok(_)) => match work.upgrade() {
                    Some(work) => work.notify_waiters(),
                    None => return,
                },
                Ok(Err(err)) => {
                    tracing::warn!(target: "headrace.outbox", %err, "LISTEN connection lost; reconnecting");
                    break;
                }
                Err(_) if work.strong_count() == 0 => return,
                Err(_) => {}
            }
        }
    }
}
