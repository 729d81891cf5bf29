//! One `LISTEN` connection per store handle: notifications are hints that
//! wake the handle's subscriptions, which then read the log themselves.
//!
//! Nothing is read from a notification but its arrival: a subscription
//! always pages from its own position, so a lost, duplicated or late
//! notification costs at most a wait (subscriptions also look again after
//! [`crate::subscription`]'s poll interval), never an event.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the listener waits before trying again after an error.
const RETRY: Duration = Duration::from_millis(200);

/// The handle's listener task and the signal it bumps.
pub(crate) struct Listener {
    /// A counter bumped on every notification, after every reconnect (when
    /// notifications may have been lost) and after every insert through
    /// the handle; subscriptions wait for it to change.
    signal: Arc<watch::Sender<u64>>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens on `channel` (its `LISTEN` is in place when this returns)
    /// with a connection from `pool`, in a task of the current runtime.
    pub(crate) async fn start(pool: &PgPool, channel: &str) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        let signal = Arc::new(watch::Sender::new(0u64));
        let bump = Arc::clone(&signal);
        let task = tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => {}
                    // The connection was lost and is back: anything may
                    // have been missed meanwhile.
                    Ok(None) => {}
                    // Cannot reconnect now; the subscriptions' own polling
                    // carries on meanwhile.
                    Err(_) => tokio::time::sleep(RETRY).await,
                }
                bump.send_modify(|n| *n = n.wrapping_add(1));
            }
        });
        Ok(Listener { signal, task })
    }

    /// Wakes every subscription of the handle.
    pub(crate) fn wake(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver of the signal, for one subscription.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Its `PgListener` unlistens and returns the connection on drop.
        self.task.abort();
    }
}
