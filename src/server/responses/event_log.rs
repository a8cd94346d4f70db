//! The typed events of a streamed background response, kept so that a client whose stream
//! broke can pick it up again (`GET /v1/responses/{id}?stream=true&starting_after=N`). An
//! event's index in the log is its `sequence_number`. Readers follow the log as it grows and
//! end when it is closed (the response ended, was cancelled, or its task died).
use futures::Stream;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Default)]
pub struct EventLog {
    inner: Mutex<Inner>,
    grew: Notify,
}

#[derive(Default)]
struct Inner {
    events: Vec<Arc<Value>>,
    closed: bool,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Entries are whole values: a panic elsewhere cannot leave one half written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add the next event (its `sequence_number` must be the log's length).
    pub fn push(&self, event: Value) {
        {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            inner.events.push(Arc::new(event));
        }
        self.grew.notify_waiters();
    }

    /// No more events: readers end once they have read what is there.
    pub fn close(&self) {
        self.lock().closed = true;
        self.grew.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JSON size of the events, for the store's budget.
    pub fn bytes(&self) -> usize {
        let inner = self.lock();
        inner
            .events
            .iter()
            .map(|e| serde_json::to_string(e.as_ref()).map_or(0, |s| s.len()))
            .sum()
    }

    /// The events from index `from` on, as they come, until the log is closed.
    pub fn follow(self: Arc<Self>, from: usize) -> impl Stream<Item = Arc<Value>> + Send {
        futures::stream::unfold((self, from), |(log, at)| async move {
            let next = loop {
                let grew = log.grew.notified();
                tokio::pin!(grew);
                // Registered before looking, so a push between the look and the wait wakes it.
                grew.as_mut().enable();
                {
                    let inner = log.lock();
                    if let Some(event) = inner.events.get(at) {
                        break Some(event.clone());
                    }
                    if inner.closed {
                        break None;
                    }
                }
                grew.await;
            };
            next.map(|event| (event, (log, at + 1)))
        })
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("EventLog")
            .field("events", &inner.events.len())
            .field("closed", &inner.closed)
            .finish()
    }
}

/// Closes the log when dropped: however the task writing it ends (finished, cancelled by
/// abort, or a panic), its readers are not left waiting.
pub struct CloseOnDrop(pub Arc<EventLog>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reader_gets_what_is_there_then_what_comes_until_closed() {
        let log = Arc::new(EventLog::new());
        log.push(json!(0));
        log.push(json!(1));
        let reader = tokio::spawn(
            log.clone()
                .follow(1)
                .map(|e| e.as_ref().clone())
                .collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.push(json!(2));
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.push(json!(3));
        log.close();
        log.push(json!(4));
        let read = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the reader ends when the log closes")
            .unwrap();
        assert_eq!(read, [json!(1), json!(2), json!(3)]);
        assert_eq!(log.len(), 4, "nothing is added once closed");
    }

    #[tokio::test]
    async fn a_reader_past_the_end_of_a_closed_log_reads_nothing() {
        let log = Arc::new(EventLog::new());
        log.push(json!("a"));
        {
            let _closing = CloseOnDrop(log.clone());
        }
        assert_eq!(log.clone().follow(5).count().await, 0);
        assert_eq!(log.clone().follow(0).count().await, 1);
        assert!(log.bytes() > 0);
    }
}
