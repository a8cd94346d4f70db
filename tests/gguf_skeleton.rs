//! scripts/gguf-skeleton.py (how the GPU proof benches the real GGUF test models where they
//! cannot travel): a GGUF made into a skeleton and filled back has the original's size, header
//! and tensor layout, and each tensor's bytes are its first blocks over and over.
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::path::Path;
use std::process::Command;

/// Bytes of each tensor the skeleton keeps (SAMPLE_BYTES in the script), in whole blocks.
const SAMPLE_BYTES: usize = 4096;

fn python3() -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: no python3 to run scripts/gguf-skeleton.py");
    }
    ok.then_some("python3")
}

fn run(python: &str, args: &[&Path]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gguf-skeleton.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gguf-skeleton.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ramp(n: usize, scale: f32) -> Tensor {
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 37) % 101) as f32 * scale - 0.5)
        .collect();
    Tensor::from_vec(v, n, &Device::Cpu).unwrap()
}

/// A GGUF with tensors smaller and larger than a sample, quantized and not.
fn write_gguf(path: &Path) -> Vec<(&'static str, GgmlDType, usize)> {
    let specs = [
        ("small.weight", GgmlDType::F32, 40),
        ("big_f32.weight", GgmlDType::F32, 5000),
        ("big_q8.weight", GgmlDType::Q8_0, 32 * 400),
        ("big_q4k.weight", GgmlDType::Q4K, 256 * 60),
    ];
    let tensors: Vec<(&str, QTensor)> = specs
        .iter()
        .map(|&(name, ty, n)| (name, QTensor::quantize(&ramp(n, 0.01), ty).unwrap()))
        .collect();
    let md = [
        ("general.architecture", Value::String("llama".into())),
        ("general.alignment", Value::U32(64)),
        (
            "tokenizer.ggml.tokens",
            Value::Array(vec![Value::String("a".into()); 3]),
        ),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
    specs.to_vec()
}

fn content(path: &Path) -> gguf_file::Content {
    gguf_file::Content::read(&mut std::fs::File::open(path).unwrap()).unwrap()
}

#[test]
fn a_filled_skeleton_has_the_layout_and_tiles_each_tensors_first_blocks() {
    let Some(python) = python3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (model, skeleton, filled) = (
        dir.path().join("m.gguf"),
        dir.path().join("m.skel.xz"),
        dir.path().join("m.random-weights.gguf"),
    );
    let specs = write_gguf(&model);
    run(python, &[Path::new("make"), &model, &skeleton]);
    run(python, &[Path::new("fill"), &skeleton, &filled]);
    let (a, b) = (
        std::fs::read(&model).unwrap(),
        std::fs::read(&filled).unwrap(),
    );
    assert_eq!(a.len(), b.len(), "the filled file's size");
    let skeleton_len = std::fs::metadata(&skeleton).unwrap().len() as usize;
    assert!(
        skeleton_len < a.len() / 2,
        "a skeleton of {skeleton_len} bytes"
    );
    let (ca, cb) = (content(&model), content(&filled));
    assert_eq!(ca.tensor_data_offset, cb.tensor_data_offset);
    let start = ca.tensor_data_offset as usize;
    assert_eq!(a[..start], b[..start], "header, metadata and tensor infos");
    for (name, ty, n) in specs {
        let (ia, ib) = (&ca.tensor_infos[name], &cb.tensor_infos[name]);
        assert_eq!(
            (ia.offset, ia.ggml_dtype),
            (ib.offset, ib.ggml_dtype),
            "{name}"
        );
        assert_eq!(ia.shape.dims(), ib.shape.dims(), "{name}");
        let size = n / ty.block_size() * ty.type_size();
        let at = start + ia.offset as usize;
        let (orig, got) = (&a[at..at + size], &b[at..at + size]);
        let sample = size.min(SAMPLE_BYTES / ty.type_size() * ty.type_size());
        let tiled: Vec<u8> = orig[..sample].iter().copied().cycle().take(size).collect();
        assert_eq!(
            got,
            &tiled[..],
            "{name}: its first {sample} bytes over and over"
        );
        if size > sample {
            assert_ne!(
                orig, got,
                "{name}: the weights past the sample are not kept"
            );
        }
        // Whole blocks: the filled tensor reads back as one of its type.
        let t = ib.read(
            &mut std::fs::File::open(&filled).unwrap(),
            cb.tensor_data_offset,
            &Device::Cpu,
        );
        assert!(t.unwrap().dequantize(&Device::Cpu).is_ok(), "{name}");
    }
}
