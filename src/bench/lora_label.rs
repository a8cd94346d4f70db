//! How a run's LoRA adapters are written in its result (`model.lora` of `candor bench`,
//! `lora` of `candor perplexity`) and keyed in reports: each adapter's path, with `@SCALE`
//! when it ran at another scale than its own, joined by ` + `. One adapter at scale 1 reads
//! as its path alone, as results written before scales were offered do.
use crate::report::input::stem;
use std::path::PathBuf;

const JOIN: &str = " + ";

/// The label of adapters run at these scales, or None for the base model.
pub fn label(adapters: &[(PathBuf, f32)]) -> Option<String> {
    if adapters.is_empty() {
        return None;
    }
    let each = adapters.iter().map(|(path, scale)| match scale {
        1.0 => path.display().to_string(),
        _ => format!("{}@{scale}", path.display()),
    });
    Some(each.collect::<Vec<_>>().join(JOIN))
}

/// What a run with these adapters adds to its model's key (` + LoRA sql`, ` + LoRA sql@0.5 +
/// chat`): a run with adapters is another model's, never grouped with the base's. Files are
/// named by their stems.
pub fn key_suffix(label: Option<&str>) -> String {
    let Some(label) = label else {
        return String::new();
    };
    let stems: Vec<String> = label
        .split(JOIN)
        .map(|one| match one.rsplit_once('@') {
            Some((path, scale)) if scale.parse::<f32>().is_ok() => {
                format!("{}@{scale}", stem(path))
            }
            _ => stem(one),
        })
        .collect();
    format!(" + LoRA {}", stems.join(JOIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_adapter_at_its_own_scale_is_its_path_and_others_carry_theirs() {
        assert_eq!(label(&[]), None);
        let one = label(&[("/a/sql-lora".into(), 1.0)]);
        assert_eq!(one.as_deref(), Some("/a/sql-lora"));
        assert_eq!(key_suffix(one.as_deref()), " + LoRA sql-lora");
        let two = label(&[("/a/sql.gguf".into(), 0.5), ("/b/chat".into(), -1.0)]);
        assert_eq!(two.as_deref(), Some("/a/sql.gguf@0.5 + /b/chat@-1"));
        assert_eq!(key_suffix(two.as_deref()), " + LoRA sql@0.5 + chat@-1");
        assert_eq!(key_suffix(None), "");
        // An `@` that is no scale belongs to the path.
        assert_eq!(key_suffix(Some("/a/x@home.gguf")), " + LoRA x@home");
    }
}
