//! sentence-transformers' `Dense` modules: the projections some embedders run on the pooled
//! vector (LaBSE's 768→768 tanh layer; stella's 1536→1024 on a Qwen2 decoder), listed after
//! the `Pooling` module in `modules.json`, each a directory with `config.json`
//! (`in_features`, `out_features`, `bias`, `activation_function`) and its `linear` weights.
//! An embedding without them is not the model's embedding, so a module candor cannot run is
//! refused at load, not skipped.
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// One module: `act(W · x + b)`.
#[derive(Debug, Clone)]
pub struct Dense {
    /// `[out, in]`, row-major.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
    tanh: bool,
}

/// The modules in the order the embedding runs through them.
#[derive(Debug, Clone)]
pub struct DenseModules(Vec<Dense>);

impl DenseModules {
    /// The width of the vector the last module answers.
    pub fn outputs(&self) -> usize {
        self.0.last().map_or(0, |d| d.outputs)
    }

    /// The width the first module takes.
    pub fn inputs(&self) -> usize {
        self.0.first().map_or(0, |d| d.inputs)
    }

    /// A pooled vector through every module.
    pub fn apply(&self, pooled: Vec<f32>) -> Vec<f32> {
        self.0.iter().fold(pooled, |x, d| d.apply(&x))
    }
}

impl Dense {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        (0..self.outputs)
            .map(|o| {
                let row = &self.weight[o * self.inputs..(o + 1) * self.inputs];
                let dot: f32 = row.iter().zip(x).map(|(w, v)| w * v).sum();
                let y = dot + self.bias.as_ref().map_or(0.0, |b| b[o]);
                if self.tanh {
                    y.tanh()
                } else {
                    y
                }
            })
            .collect()
    }
}

/// The `Dense` modules a sentence-transformers checkout lists after its pooling, each chained
/// onto the last (the first takes `hidden` values); None where there are none.
pub fn from_sentence_transformers(
    dir: &Path,
    hidden: usize,
) -> Result<Option<DenseModules>, String> {
    let Some(modules) = candor_models::sentence_transformers::Modules::read(dir)? else {
        return Ok(None);
    };
    let mut dense = Vec::new();
    let mut width = hidden;
    for module in modules.dirs_of(".Dense") {
        let layer = load(&module, width)?;
        width = layer.outputs;
        dense.push(layer);
    }
    Ok((!dense.is_empty()).then_some(DenseModules(dense)))
}

/// The module in `dir`, taking `inputs` values.
fn load(dir: &Path, inputs: usize) -> Result<Dense, String> {
    let at = |what: &str| format!("{}: {what}", dir.display());
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| at(&e.to_string()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| at(&format!("config.json: {e}")))?;
    let size = |key: &str| -> Result<usize, String> {
        (config.get(key).and_then(|v| v.as_u64()))
            .map(|v| v as usize)
            .ok_or_else(|| at(&format!("config.json has no `{key}`")))
    };
    let (in_features, outputs) = (size("in_features")?, size("out_features")?);
    if in_features != inputs || outputs == 0 {
        return Err(at(&format!(
            "a Dense module of {in_features} inputs and {outputs} outputs after a vector of \
             {inputs}"
        )));
    }
    let activation = (config.get("activation_function").and_then(|v| v.as_str()))
        .unwrap_or("torch.nn.modules.linear.Identity");
    let tanh = match activation.rsplit('.').next() {
        Some("Identity") => false,
        Some("Tanh") => true,
        _ => {
            return Err(at(&format!(
                "the Dense activation `{activation}` is not served (Identity, Tanh)"
            )))
        }
    };
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(at(
            "no model.safetensors (a pytorch_model.bin is not read: save the module with \
             safetensors)",
        ));
    }
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| at(&format!("model.safetensors: {e}")))?;
    let host = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
        let t: &Tensor = tensors
            .get(name)
            .ok_or_else(|| at(&format!("model.safetensors has no `{name}`")))?;
        if t.dims() != shape {
            return Err(at(&format!("`{name}` is {:?}, not {shape:?}", t.dims())));
        }
        (t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>()))
        .map_err(|e| at(&format!("`{name}`: {e}")))
    };
    let weight = host("linear.weight", &[outputs, inputs])?;
    let biased = config.get("bias").and_then(|v| v.as_bool()).unwrap_or(true);
    let bias = match biased {
        true => Some(host("linear.bias", &[outputs])?),
        false => None,
    };
    Ok(Dense {
        weight,
        bias,
        inputs,
        outputs,
        tanh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn module(dir: &Path, name: &str, config: serde_json::Value, w: Vec<f32>, b: Option<Vec<f32>>) {
        let at = dir.join(name);
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(at.join("config.json"), config.to_string()).unwrap();
        let (o, i) = (
            config["out_features"].as_u64().unwrap() as usize,
            config["in_features"].as_u64().unwrap() as usize,
        );
        let mut tensors = HashMap::new();
        tensors.insert(
            "linear.weight".to_string(),
            Tensor::from_vec(w, (o, i), &Device::Cpu).unwrap(),
        );
        if let Some(b) = b {
            tensors.insert(
                "linear.bias".to_string(),
                Tensor::from_vec(b, o, &Device::Cpu).unwrap(),
            );
        }
        candle_core::safetensors::save(&tensors, at.join("model.safetensors")).unwrap();
    }

    #[test]
    fn dense_modules_run_in_order_after_the_pooling() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("modules.json"),
            json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
                {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
                {"idx": 4, "name": "4", "path": "4_Normalize", "type": "sentence_transformers.models.Normalize"}
            ])
            .to_string(),
        )
        .unwrap();
        // 2 -> 3 with tanh and a bias, then 3 -> 1 without either.
        let tanh = "torch.nn.modules.activation.Tanh";
        module(
            d,
            "2_Dense",
            json!({"in_features": 2, "out_features": 3, "bias": true, "activation_function": tanh}),
            vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            Some(vec![0.0, 0.5, -1.0]),
        );
        module(
            d,
            "3_Dense",
            json!({"in_features": 3, "out_features": 1, "bias": false, "activation_function": "torch.nn.modules.linear.Identity"}),
            vec![1.0, 2.0, 3.0],
            None,
        );
        let modules = from_sentence_transformers(d, 2).unwrap().unwrap();
        assert_eq!((modules.inputs(), modules.outputs()), (2, 1));
        let x = [0.2f32, -0.4];
        let first = [
            0.2f32.tanh(),
            (-0.4f32 + 0.5).tanh(),
            (0.2f32 - 0.4 - 1.0).tanh(),
        ];
        let want = first[0] + 2.0 * first[1] + 3.0 * first[2];
        let got = modules.apply(x.to_vec());
        assert!((got[0] - want).abs() < 1e-6, "{got:?} vs {want}");

        // A width that does not chain, an activation not served, weights only as .bin.
        assert!(from_sentence_transformers(d, 4).is_err());
        module(
            d,
            "3_Dense",
            json!({"in_features": 3, "out_features": 1, "activation_function": "torch.nn.modules.activation.ReLU"}),
            vec![1.0, 2.0, 3.0],
            Some(vec![0.0]),
        );
        let err = from_sentence_transformers(d, 2).unwrap_err();
        assert!(err.contains("ReLU"), "{err}");
        module(
            d,
            "3_Dense",
            json!({"in_features": 3, "out_features": 1}),
            vec![1.0, 2.0, 3.0],
            Some(vec![0.0]),
        );
        assert!(from_sentence_transformers(d, 2).is_ok());
        std::fs::remove_file(d.join("3_Dense/model.safetensors")).unwrap();
        let err = from_sentence_transformers(d, 2).unwrap_err();
        assert!(err.contains("no model.safetensors"), "{err}");
        std::fs::remove_file(d.join("modules.json")).unwrap();
        assert!(from_sentence_transformers(d, 2).unwrap().is_none());
    }
}
