//! Mistral's call ids: nine letters and digits. Its models saw no others, its templates for
//! transformers refuse others (Mistral Nemo's, Mistral Small 3.2's: "Tool call IDs should be
//! alphanumeric strings with length 9!") and mistral_common validates them so; but a history
//! sent back carries the ids its API gave (candor's `call_...`, the Responses API's, the
//! Messages API's `toolu_...`, an agent framework's own). Each other id is rewritten, for the
//! prompt only, into nine characters derived from it, the same for a call and the result that
//! answers it, and the same at every request (a conversation's prompt stays a prefix of its
//! next one, for the prefix cache). vLLM cuts such ids to their last nine characters instead,
//! which keeps separators and may join two ids into one.
use candor_models::chat_template::ChatMessage;
use sha2::{Digest, Sha256};

const LENGTH: usize = 9;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Every call id and answered id in `msgs` in Mistral's form.
pub fn in_mistral_form(msgs: &mut [ChatMessage]) {
    for m in msgs {
        if let Some(id) = m.tool_call_id.as_mut() {
            *id = mistral_id(id);
        }
        for call in m.tool_calls.iter_mut().flatten() {
            if let Some(serde_json::Value::String(id)) = call.get_mut("id") {
                *id = mistral_id(id);
            }
        }
    }
}

/// `id` where it is Mistral's form already, else nine characters of its hash.
fn mistral_id(id: &str) -> String {
    if id.len() == LENGTH && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    let digest = Sha256::digest(id.as_bytes());
    // 62^9 ≈ 1.4e16 ids: the digest's first eight bytes, base 62.
    let mut n = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    (0..LENGTH)
        .map(|_| {
            let c = ALPHABET[(n % 62) as usize] as char;
            n /= 62;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn is_mistral_form(id: &str) -> bool {
        id.len() == LENGTH && id.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    /// A call and its result keep one id between them, the same at every request; ids of
    /// Mistral's form are kept; two ids stay two.
    #[test]
    fn ids_become_nine_characters_consistently() {
        let mut call = ChatMessage::text("assistant", "");
        call.tool_calls = Some(vec![
            json!({"id": "call_3f2a9b1c0d", "type": "function",
                   "function": {"name": "f", "arguments": {}}}),
            json!({"id": "abc123XYZ", "type": "function",
                   "function": {"name": "g", "arguments": {}}}),
        ]);
        let mut result = ChatMessage::text("tool", "ok");
        result.tool_call_id = Some("call_3f2a9b1c0d".into());
        let mut msgs = vec![call, result];
        in_mistral_form(&mut msgs);
        let calls = msgs[0].tool_calls.as_ref().unwrap();
        let first = calls[0]["id"].as_str().unwrap();
        assert!(is_mistral_form(first), "{first}");
        assert_eq!(msgs[1].tool_call_id.as_deref(), Some(first));
        assert_eq!(calls[1]["id"], "abc123XYZ");
        assert_eq!(mistral_id("call_3f2a9b1c0d"), first);
        assert_ne!(mistral_id("toolu_01"), mistral_id("toolu_02"));
        assert!(is_mistral_form(&mistral_id("")));
    }
}
