//! Conversations (`/v1/conversations`): item lists a response continues (`conversation` on
//! `/v1/responses`), which then gain that response's input and output items. In memory, as the
//! responses are, under their own budget of the same size (`--responses-store-mb`): the
//! conversation used longest ago goes first once their JSON passes it.
use super::budgeted::Budgeted;
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub created_at: u64,
    pub metadata: Value,
    /// Oldest first, each with its `id`.
    pub items: Vec<Value>,
}

impl Conversation {
    /// The conversation object (its items are listed apart).
    pub fn object(&self) -> Value {
        json!({"id": self.id, "object": "conversation", "created_at": self.created_at,
               "metadata": self.metadata})
    }

    fn bytes(&self) -> usize {
        let len = |v: &Value| serde_json::to_string(v).map_or(0, |s| s.len());
        len(&self.metadata) + self.items.iter().map(len).sum::<usize>()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConversationError {
    #[error("no conversation `{0}` (conversations are kept in memory, the least recently used dropped first, and not across restarts)")]
    Missing(String),
    #[error("the conversation would hold {0} bytes of items, more than the whole store ({1}; `--responses-store-mb`)")]
    TooLarge(usize, usize),
}

pub struct ConversationStore {
    budget: usize,
    /// Least recently used first.
    inner: Mutex<Budgeted<Conversation>>,
}

/// An item as a conversation keeps it: with an `id` (made for one sent without), a message's
/// text content as parts (`input_text`, or `output_text` for the assistant's), done.
pub fn stored_item(item: &Value) -> Value {
    let mut item = item.clone();
    let Some(o) = item.as_object_mut() else {
        return item;
    };
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
        .to_string();
    o.insert("type".into(), json!(kind));
    if kind == "message" {
        let part = match o.get("role").and_then(Value::as_str) {
            Some("assistant") => "output_text",
            _ => "input_text",
        };
        if let Some(Value::String(text)) = o.get("content") {
            let parts = json!([{"type": part, "text": text}]);
            o.insert("content".into(), parts);
        }
        o.entry("status").or_insert(json!("completed"));
    }
    if !o.contains_key("id") {
        let prefix = match kind.as_str() {
            "message" => "msg",
            "function_call" => "fc",
            "function_call_output" => "fco",
            "reasoning" => "rs",
            _ => "item",
        };
        o.insert(
            "id".into(),
            json!(crate::server::state::new_item_id(prefix)),
        );
    }
    item
}

impl ConversationStore {
    pub fn new(budget_bytes: usize) -> Self {
        ConversationStore {
            budget: budget_bytes,
            inner: Mutex::new(Budgeted::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Budgeted<Conversation>> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `c` (new or grown), dropping the least recently used others past the budget.
    fn keep(
        &self,
        inner: &mut Budgeted<Conversation>,
        c: Conversation,
    ) -> Result<(), ConversationError> {
        let bytes = c.bytes();
        if bytes > self.budget {
            return Err(ConversationError::TooLarge(bytes, self.budget));
        }
        let id = c.id.clone();
        inner.insert(&id, c, bytes, self.budget);
        Ok(())
    }

    pub fn create(
        &self,
        metadata: Value,
        items: &[Value],
    ) -> Result<Conversation, ConversationError> {
        let c = Conversation {
            id: crate::server::state::new_item_id("conv"),
            created_at: crate::server::state::unix_now(),
            metadata,
            items: items.iter().map(stored_item).collect(),
        };
        self.keep(&mut self.lock(), c.clone())?;
        Ok(c)
    }

    pub fn get(&self, id: &str) -> Result<Conversation, ConversationError> {
        let mut inner = self.lock();
        let c = inner
            .get(id)
            .cloned()
            .ok_or_else(|| ConversationError::Missing(id.to_string()))?;
        inner.touch(id);
        Ok(c)
    }

    pub fn set_metadata(
        &self,
        id: &str,
        metadata: Value,
    ) -> Result<Conversation, ConversationError> {
        self.change(id, |c| {
            c.metadata = metadata;
        })
    }

    /// Add items at the end; the items as kept (with their ids).
    pub fn append(&self, id: &str, items: &[Value]) -> Result<Vec<Value>, ConversationError> {
        let added: Vec<Value> = items.iter().map(stored_item).collect();
        self.change(id, |c| c.items.extend(added.iter().cloned()))?;
        Ok(added)
    }

    /// Drop one item; the conversation as it is then, or `Ok(None)` when it has no such item.
    pub fn remove_item(
        &self,
        id: &str,
        item_id: &str,
    ) -> Result<Option<Conversation>, ConversationError> {
        let mut found = false;
        let c = self.change(id, |c| {
            let before = c.items.len();
            c.items.retain(|i| i["id"].as_str() != Some(item_id));
            found = c.items.len() < before;
        })?;
        Ok(found.then_some(c))
    }

    pub fn delete(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    fn change(
        &self,
        id: &str,
        edit: impl FnOnce(&mut Conversation),
    ) -> Result<Conversation, ConversationError> {
        let mut inner = self.lock();
        let mut c = inner
            .get(id)
            .cloned()
            .ok_or_else(|| ConversationError::Missing(id.to_string()))?;
        edit(&mut c);
        self.keep(&mut inner, c.clone())?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_kept_with_ids_and_text_parts() {
        let store = ConversationStore::new(1 << 20);
        let c = store
            .create(
                json!({"topic": "t"}),
                &[json!({"role": "user", "content": "hi"})],
            )
            .unwrap();
        let first = &c.items[0];
        assert_eq!(first["type"], "message");
        assert_eq!(
            first["content"],
            json!([{"type": "input_text", "text": "hi"}])
        );
        assert!(first["id"].as_str().unwrap().starts_with("msg_"));
        let added = store
            .append(
                &c.id,
                &[
                    json!({"type": "message", "role": "assistant", "content": "hello"}),
                    json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "id": "fc_1"}),
                ],
            )
            .unwrap();
        assert_eq!(added[0]["content"][0]["type"], "output_text");
        assert_eq!(added[1]["id"], "fc_1");
        assert_eq!(store.get(&c.id).unwrap().items.len(), 3);
        let left = store.remove_item(&c.id, "fc_1").unwrap().unwrap();
        assert_eq!(left.items.len(), 2);
        assert!(store.remove_item(&c.id, "fc_1").unwrap().is_none());
        assert!(store.delete(&c.id));
        assert_eq!(
            store.get(&c.id).unwrap_err(),
            ConversationError::Missing(c.id.clone())
        );
    }

    #[test]
    fn the_least_recently_used_go_first_past_the_budget() {
        let item = json!({"role": "user", "content": "x".repeat(100)});
        let one = ConversationStore::new(1 << 20)
            .create(json!({}), std::slice::from_ref(&item))
            .unwrap()
            .bytes();
        let store = ConversationStore::new(one * 2 + one / 2);
        let a = store
            .create(json!({}), std::slice::from_ref(&item))
            .unwrap();
        let b = store
            .create(json!({}), std::slice::from_ref(&item))
            .unwrap();
        store.get(&a.id).unwrap(); // `a` is used: `b` is now the least recent
        store
            .create(json!({}), std::slice::from_ref(&item))
            .unwrap();
        assert!(store.get(&a.id).is_ok());
        assert!(store.get(&b.id).is_err());
        let huge = json!({"role": "user", "content": "x".repeat(one * 3)});
        assert!(matches!(
            store.append(&a.id, &[huge]),
            Err(ConversationError::TooLarge(..))
        ));
        assert_eq!(
            store.get(&a.id).unwrap().items.len(),
            1,
            "a refused append adds nothing"
        );
    }
}
