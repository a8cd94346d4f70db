//! transformers 5 saves a checkout's RoPE settings as one `rope_parameters` object
//! (`rope_theta`, `rope_type` and the scaling's own keys, `partial_rotary_factor`), or as one
//! per layer type (`full_attention`, `sliding_attention`: Gemma 3), where 4.x saved
//! `rope_theta`, `rope_scaling`, `partial_rotary_factor` (and Gemma 3's
//! `rope_local_base_freq`) at the top. The architectures read the 4.x keys: a 5.x config gets
//! them from its `rope_parameters` here, where it lacks them, so that a checkout saved by
//! either reads alike (without this, a 5.x checkout would run at the default base of 10,000).
use serde_json::{Map, Value};
use std::borrow::Cow;

/// `cfg` with the 4.x RoPE keys its `rope_parameters` implies added where missing; `cfg`
/// itself when it has no `rope_parameters`.
pub fn with_legacy_rope_keys(cfg: &Value) -> Cow<'_, Value> {
    let Some(params) = cfg.get("rope_parameters").and_then(Value::as_object) else {
        return Cow::Borrowed(cfg);
    };
    let Some(top) = cfg.as_object() else {
        return Cow::Borrowed(cfg);
    };
    // Per layer type (Gemma 3): the global layers' settings are the model's, the sliding
    // layers' base is its local one.
    let per_type = |key: &str| params.get(key).and_then(Value::as_object);
    let (main, local) = match (per_type("full_attention"), per_type("sliding_attention")) {
        (None, None) => (params, None),
        (full, sliding) => match full.or(sliding) {
            Some(main) => (main, sliding.filter(|_| full.is_some())),
            None => return Cow::Borrowed(cfg),
        },
    };
    let mut out = top.clone();
    let mut add = |key: &str, value: Option<&Value>| {
        let missing = out.get(key).is_none_or(Value::is_null);
        if let (true, Some(value)) = (missing, value) {
            out.insert(key.to_string(), value.clone());
        }
    };
    add("rope_theta", main.get("rope_theta"));
    add("partial_rotary_factor", main.get("partial_rotary_factor"));
    add(
        "rope_local_base_freq",
        local.and_then(|l| l.get("rope_theta")),
    );
    let scaled = main
        .get("rope_type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "default");
    if scaled {
        add("rope_scaling", Some(&Value::Object(scaling(main))));
    }
    Cow::Owned(Value::Object(out))
}

/// A `rope_parameters` object as a 4.x `rope_scaling`: its keys but the base and the rotated
/// fraction, which 4.x kept apart.
fn scaling(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "rope_theta" | "partial_rotary_factor"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_object_gives_the_base_scaling_and_fraction() {
        let cfg = json!({"model_type": "llama", "rope_parameters": {"rope_type": "llama3",
            "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
            "partial_rotary_factor": 0.5}});
        let out = with_legacy_rope_keys(&cfg);
        assert_eq!(out["rope_theta"], 500000.0);
        assert_eq!(out["partial_rotary_factor"], 0.5);
        assert_eq!(out["rope_scaling"]["rope_type"], "llama3");
        assert_eq!(out["rope_scaling"]["factor"], 8.0);
        assert!(out["rope_scaling"].get("rope_theta").is_none());
        // Unscaled: only the base.
        let cfg = json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}});
        let out = with_legacy_rope_keys(&cfg);
        assert_eq!(out["rope_theta"], 1e6);
        assert!(out.get("rope_scaling").is_none());
    }

    #[test]
    fn the_top_level_keys_win_and_plain_configs_are_untouched() {
        let cfg = json!({"rope_theta": 10000.0, "rope_scaling": null,
            "rope_parameters": {"rope_type": "linear", "rope_theta": 1e6, "factor": 2.0}});
        let out = with_legacy_rope_keys(&cfg);
        assert_eq!(out["rope_theta"], 10000.0);
        assert_eq!(out["rope_scaling"]["factor"], 2.0);
        let plain = json!({"rope_theta": 5.0});
        assert!(matches!(with_legacy_rope_keys(&plain), Cow::Borrowed(_)));
    }

    /// Gemma 3's per-layer-type parameters: the global layers' base and scaling, the local
    /// base from the sliding layers'.
    #[test]
    fn per_layer_types_give_the_global_and_local_bases() {
        let cfg = json!({"model_type": "gemma3_text", "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0}}});
        let out = with_legacy_rope_keys(&cfg);
        assert_eq!(out["rope_theta"], 1000000.0);
        assert_eq!(out["rope_local_base_freq"], 10000.0);
        assert_eq!(out["rope_scaling"]["rope_type"], "linear");
        // Only sliding layers named: their base is the model's.
        let cfg = json!({"rope_parameters": {"sliding_attention": {"rope_theta": 7.0}}});
        let out = with_legacy_rope_keys(&cfg);
        assert_eq!(out["rope_theta"], 7.0);
        assert!(out.get("rope_local_base_freq").is_none());
    }
}
