//! Responses kept for `previous_response_id` and `GET /v1/responses/{id}`: in memory (lost on
//! restart, as vLLM's), the oldest dropped first once their JSON passes a byte budget
//! (`--responses-store-mb`). Each response keeps its own input and output items and the id of
//! the response it continued; a conversation is the chain of them, so a long chat costs its
//! length once, not once per turn. A streamed background response also keeps its events, so
//! its stream can be picked up again.
use super::budgeted::Budgeted;
use super::event_log::EventLog;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone)]
pub struct Stored {
    /// The response object as it was answered.
    pub response: Arc<Value>,
    /// This request's input items (text input as one user message).
    pub input: Arc<Vec<Value>>,
    pub previous: Option<String>,
    /// The typed events, for a response run in the background with `stream: true`.
    pub events: Option<Arc<EventLog>>,
}

impl Stored {
    /// The entry's JSON size; a log still growing counts as long as it is when kept.
    fn bytes(&self) -> usize {
        let len = |v: &Value| serde_json::to_string(v).map_or(0, |s| s.len());
        len(&self.response)
            + self.input.iter().map(len).sum::<usize>()
            + self.events.as_ref().map_or(0, |log| log.bytes())
    }

    /// The items a continuation sees: this request's input, then what it answered.
    pub fn items(&self) -> impl Iterator<Item = &Value> {
        let output = self.response["output"].as_array().into_iter().flatten();
        self.input.iter().chain(output)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("no stored response `{0}` (responses are kept in memory, the oldest dropped first, and not across restarts)")]
    Missing(String),
    #[error("the conversation through `{0}` is longer than {1} responses")]
    TooLong(String, usize),
}

/// Longest chain a continuation walks: a guard against a cycle in hand-made ids, far beyond
/// any conversation that fits a context.
const MAX_CHAIN: usize = 10_000;

pub struct ResponseStore {
    budget: usize,
    inner: Mutex<Budgeted<Stored>>,
    /// Background responses still running, to cancel.
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Told when the last running background response ends.
    idle: tokio::sync::Notify,
}

impl ResponseStore {
    pub fn new(budget_bytes: usize) -> Self {
        ResponseStore {
            budget: budget_bytes,
            inner: Mutex::new(Budgeted::default()),
            running: Mutex::new(HashMap::new()),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// Whether responses are kept at all (a budget of 0 keeps none).
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    fn lock(&self) -> MutexGuard<'_, Budgeted<Stored>> {
        // A panic elsewhere while holding the lock leaves whole entries only.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep a response, dropping the oldest past the budget; one larger than the whole budget
    /// is not kept. Returns whether it was.
    pub fn put(&self, id: &str, stored: Stored) -> bool {
        let bytes = stored.bytes();
        if bytes > self.budget {
            return false;
        }
        self.lock().insert(id, stored, bytes, self.budget);
        true
    }

    fn lock_running(&self) -> MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A background response started running.
    pub fn running(&self, id: &str, task: tokio::task::AbortHandle) {
        self.lock_running().insert(id.to_string(), task);
    }

    /// A background response's task ended (the response kept as it ended).
    pub fn finished(&self, id: &str) {
        let mut running = self.lock_running();
        if running.remove(id).is_some() && running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// How many background responses are running.
    pub fn running_count(&self) -> usize {
        self.lock_running().len()
    }

    /// Wait until no background response is running (a server shutting down lets them end).
    pub async fn until_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.lock_running().is_empty() {
                return;
            }
            idle.await;
        }
    }

    /// Stop a running background response: it is kept as `cancelled` with what it had, and
    /// returned; `None` when it is not running.
    pub fn cancel(&self, id: &str) -> Option<Stored> {
        let task = {
            let mut running = self.lock_running();
            let task = running.remove(id)?;
            if running.is_empty() {
                self.idle.notify_waiters();
            }
            task
        };
        // Dropping the task drops its receiver, which ends the generation in the engine, and
        // closes its event log.
        task.abort();
        let mut inner = self.lock();
        let stored = inner.get_mut(id)?;
        let status = stored.response["status"].as_str().unwrap_or("");
        if status == "queued" || status == "in_progress" {
            let mut response = stored.response.as_ref().clone();
            response["status"] = serde_json::json!("cancelled");
            stored.response = Arc::new(response);
        }
        Some(stored.clone())
    }

    pub fn get(&self, id: &str) -> Option<Stored> {
        self.lock().get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    /// The conversation `id` ends: every item of its chain, oldest first.
    pub fn conversation(&self, id: &str) -> Result<Vec<Value>, ChainError> {
        let mut chain = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(at) = next {
            if chain.len() == MAX_CHAIN {
                return Err(ChainError::TooLong(id.to_string(), MAX_CHAIN));
            }
            let stored = self.get(&at).ok_or(ChainError::Missing(at))?;
            next = stored.previous.clone();
            chain.push(stored);
        }
        Ok(chain
            .iter()
            .rev()
            .flat_map(|s| s.items().cloned())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(text: &str, previous: Option<&str>) -> Stored {
        Stored {
            response: Arc::new(
                json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]}),
            ),
            input: Arc::new(vec![json!({"role": "user", "content": text})]),
            previous: previous.map(str::to_string),
            events: None,
        }
    }

    #[test]
    fn a_conversation_is_its_chain_oldest_first() {
        let store = ResponseStore::new(1 << 20);
        assert!(store.put("a", stored("one", None)));
        assert!(store.put("b", stored("two", Some("a"))));
        let items = store.conversation("b").unwrap();
        let texts: Vec<String> = items
            .iter()
            .map(|i| {
                i["content"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i["content"][0]["text"].as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(texts, ["one", "one", "two", "two"]);
        assert!(store.remove("a"));
        assert!(!store.remove("a"));
        assert_eq!(
            store.conversation("b"),
            Err(ChainError::Missing("a".into()))
        );
    }

    #[test]
    fn the_oldest_go_first_past_the_budget() {
        let one = stored("x", None).bytes();
        let store = ResponseStore::new(one * 2);
        store.put("a", stored("x", None));
        store.put("b", stored("y", None));
        store.put("c", stored("z", None));
        assert!(store.get("a").is_none());
        assert!(store.get("b").is_some() && store.get("c").is_some());
        let big = stored(&"w".repeat(one * 3), None);
        assert!(!store.put("d", big), "larger than the budget");
        assert!(store.get("b").is_some(), "a refused entry drops nothing");
        assert!(!ResponseStore::new(0).enabled());
    }

    #[tokio::test]
    async fn a_running_response_is_cancelled_once() {
        let store = ResponseStore::new(1 << 20);
        let mut queued = stored("x", None);
        queued.response = Arc::new(json!({"status": "in_progress", "output": []}));
        store.put("a", queued);
        let task = tokio::spawn(std::future::pending::<()>());
        store.running("a", task.abort_handle());
        let cancelled = store.cancel("a").unwrap();
        assert_eq!(cancelled.response["status"], "cancelled");
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(store.cancel("a").is_none(), "no longer running");
        store.put("b", stored("y", None));
        assert!(store.cancel("b").is_none(), "never ran in the background");
    }

    #[tokio::test]
    async fn idle_once_every_background_response_ended() {
        let store = Arc::new(ResponseStore::new(1 << 20));
        store.until_idle().await;
        let a = tokio::spawn(std::future::pending::<()>());
        let b = tokio::spawn(std::future::pending::<()>());
        store.running("a", a.abort_handle());
        store.running("b", b.abort_handle());
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.until_idle().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        store.finished("a");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "`b` still runs");
        store.put("b", stored("y", None));
        store.cancel("b");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("idle once `b` is cancelled")
            .unwrap();
    }

    #[test]
    fn a_cycle_of_ids_ends() {
        let store = ResponseStore::new(1 << 20);
        store.put("a", stored("x", Some("b")));
        store.put("b", stored("y", Some("a")));
        assert!(matches!(
            store.conversation("a"),
            Err(ChainError::TooLong(..))
        ));
    }
}
