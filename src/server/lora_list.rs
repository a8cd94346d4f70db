//! llama-server's list of LoRA adapters and scales, `[{"id": 0, "scale": 0.5}, ...]`: a
//! request's `lora` field (the adapters it runs with, the others not at all) and the body of
//! `POST /lora-adapters` (the scales base-model requests run at). An id is the adapter's place
//! in `GET /lora-adapters`, which is its engine slot here (slots never move: an unloaded
//! adapter leaves a hole, as llama-server's list has none to leave).
use super::error::ApiError;
use candor_models::lora::{usable_scale, MAX_LORA_SCALE as MAX_SCALE};
use serde::Deserialize;

/// One entry as sent: numbers checked by `checked`, so that a negative id or an infinite scale
/// is a 400 naming the field rather than a parse error.
#[derive(Debug, Clone, Deserialize)]
pub struct LoraScale {
    pub id: i64,
    pub scale: f64,
}

/// Where a list was sent: a request's field, or the whole body of `POST /lora-adapters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAt {
    Field(&'static str),
    Body,
}

impl ListAt {
    /// A 400 about entry `i`'s `part` (`lora[1].id`, or `[1].id` for the body).
    pub fn invalid(self, i: usize, part: &str, why: impl std::fmt::Display) -> ApiError {
        match self {
            ListAt::Field(field) => {
                ApiError::invalid(field, format!("`{field}[{i}].{part}` {why}"))
            }
            ListAt::Body => ApiError::bad_request(format!("`[{i}].{part}` of the body {why}")),
        }
    }
}

/// `list` as `(slot, scale)` pairs, each id a slot number and each scale finite, or a 400
/// naming the entry.
pub fn checked(at: ListAt, list: &[LoraScale]) -> Result<Vec<(u32, f32)>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let id = u32::try_from(entry.id).map_err(|_| {
                at.invalid(
                    i,
                    "id",
                    format_args!("must be an adapter's id (0 or more), got {}", entry.id),
                )
            })?;
            let scale = usable_scale(entry.scale).ok_or_else(|| {
                at.invalid(
                    i,
                    "scale",
                    format_args!(
                        "must be a number in [-{MAX_SCALE}, {MAX_SCALE}], got {}",
                        entry.scale
                    ),
                )
            })?;
            Ok((id, scale))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LORA: ListAt = ListAt::Field("lora");

    fn list(v: serde_json::Value) -> Vec<LoraScale> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ids_and_scales_are_checked_by_entry() {
        let ok = checked(
            LORA,
            &list(serde_json::json!([{"id": 1, "scale": 0.5}, {"id": 0, "scale": -2}])),
        )
        .unwrap();
        assert_eq!(ok, [(1, 0.5), (0, -2.0)]);
        let e = checked(
            LORA,
            &list(serde_json::json!([{"id": 0, "scale": 1}, {"id": -1, "scale": 1}])),
        )
        .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("`lora[1].id`"), "{}", e.message);
        let e = checked(LORA, &list(serde_json::json!([{"id": 0, "scale": 1e30}]))).unwrap_err();
        assert!(e.message.contains("`lora[0].scale`"), "{}", e.message);
        assert!(checked(LORA, &[]).unwrap().is_empty());
        let e = checked(
            ListAt::Body,
            &list(serde_json::json!([{"id": -2, "scale": 1}])),
        )
        .unwrap_err();
        assert_eq!(e.param, None);
        assert!(
            e.message.starts_with("`[0].id` of the body"),
            "{}",
            e.message
        );
    }
}
