//! `system_fingerprint`: what OpenAI's API returns beside `seed` so a client can tell when the
//! configuration that produced an answer changed (and a seeded request may then answer
//! differently). Here: the build, the model file, the device and its instruction sets, the
//! compute threads, the KV cache's element size and the longest draft (drafted rows change a
//! step's shape); everything that chooses kernels or their rounding.
use candor_models::backend::DeviceInfo;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

/// `fp_` and 16 hex digits, stable for one build serving one model file on one device.
pub fn system_fingerprint(
    model: &Path,
    device: &DeviceInfo,
    kv_bytes_per_value: f64,
    speculative_tokens: usize,
) -> String {
    let mut h = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    option_env!("CANDOR_GIT_COMMIT").hash(&mut h);
    model.hash(&mut h);
    // A file replaced under the same name (a re-download of another quantization).
    std::fs::metadata(model).map(|m| m.len()).ok().hash(&mut h);
    device.name.hash(&mut h);
    device.kind.hash(&mut h);
    device.features.hash(&mut h);
    device.threads.hash(&mut h);
    kv_bytes_per_value.to_bits().hash(&mut h);
    speculative_tokens.hash(&mut h);
    format!("fp_{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(threads: usize) -> DeviceInfo {
        DeviceInfo {
            name: "cpu".into(),
            kind: "cpu".into(),
            features: vec!["avx2".into()],
            threads: Some(threads),
            ..DeviceInfo::default()
        }
    }

    #[test]
    fn the_same_configuration_gives_the_same_fingerprint_and_a_change_another() {
        let model = Path::new("/models/a.gguf");
        let fp = system_fingerprint(model, &device(2), 2.0, 4);
        assert!(fp.starts_with("fp_") && fp.len() == 19, "{fp}");
        assert_eq!(fp, system_fingerprint(model, &device(2), 2.0, 4));
        assert_ne!(fp, system_fingerprint(model, &device(4), 2.0, 4), "threads");
        assert_ne!(
            fp,
            system_fingerprint(model, &device(2), 4.0, 4),
            "KV cache type"
        );
        assert_ne!(
            fp,
            system_fingerprint(Path::new("/models/b.gguf"), &device(2), 2.0, 4),
            "model"
        );
        assert_ne!(
            fp,
            system_fingerprint(model, &device(2), 2.0, 0),
            "speculative decoding"
        );
    }
}
