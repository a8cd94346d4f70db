//! Weights on the GPU: dense matrices in the backend's activation dtype (cuBLAS through candle's
//! matmul), GGML blocks kept quantized for candle's quantized CUDA matmul, or MXFP4 blocks for
//! candor's own kernels (`mxfp4`).
use super::kernels::Kernels;
use super::mxfp4::Mxfp4Weight;
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candor_models::backend::WeightDtype;
use candor_models::error::{ModelError, Result};
use candor_models::weights::{BlockType, HostWeight, SyntheticWeight};
use std::sync::Arc;

pub enum CudaWeight {
    Dense(Tensor),
    Quant(Arc<QTensor>),
    /// gpt-oss's experts as the file's blocks (17 bytes a block of 32).
    Mxfp4(Mxfp4Weight),
}

fn storage_dtype(d: WeightDtype) -> Result<DType> {
    match d {
        WeightDtype::F32 => Ok(DType::F32),
        WeightDtype::F16 => Ok(DType::F16),
        WeightDtype::BF16 => Ok(DType::BF16),
        other => Err(ModelError::Backend(format!(
            "synthetic weights of type {other} are not supported"
        ))),
    }
}

impl CudaWeight {
    /// Move a host weight to `device`: floats as dense `act` tensors, blocks as they are.
    pub fn load(w: HostWeight, device: &Device, act: DType, kernels: &Kernels) -> Result<Self> {
        match w {
            HostWeight::Dense { tensor, .. } => Ok(CudaWeight::Dense(
                tensor.to_device(device)?.to_dtype(act)?.contiguous()?,
            )),
            HostWeight::Quant(q) => match q.dtype() {
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => Ok(CudaWeight::Dense(
                    q.dequantize(&Device::Cpu)?
                        .to_device(device)?
                        .to_dtype(act)?,
                )),
                ty => Ok(CudaWeight::Quant(Arc::new(qtensor_from_ggml(
                    ty,
                    &q.data()?,
                    q.shape().dims().to_vec(),
                    device,
                )?))),
            },
            HostWeight::Mapped(b) if b.dtype == BlockType::Mxfp4 => Ok(CudaWeight::Mxfp4(
                Mxfp4Weight::load(b.bytes(), &b.shape, device)?,
            )),
            HostWeight::Mapped(b) => {
                let (dtype, bytes) = b.ggml_blocks()?;
                Ok(CudaWeight::Quant(Arc::new(qtensor_from_ggml(
                    dtype,
                    &bytes,
                    b.shape.clone(),
                    device,
                )?)))
            }
            HostWeight::Synthetic(s) => Self::synthetic(&s, act, kernels),
        }
    }

    /// Made on the device, in the weight's own dtype first so values are rounded as the host
    /// rounds them, then cast to the activation dtype.
    fn synthetic(s: &SyntheticWeight, act: DType, kernels: &Kernels) -> Result<Self> {
        let t = kernels.fill_uniform(&s.shape, storage_dtype(s.dtype)?, s.seed, (s.lo, s.hi))?;
        Ok(CudaWeight::Dense(t.to_dtype(act)?))
    }

    /// The rows of dense `parts` (matrices of one width, or vectors) as one tensor on the
    /// device; blocks stay apart (candle's quantized CUDA storage has no row concatenation).
    /// The parts are freed once the model drops them, so only one group is resident twice, and
    /// only while it is being joined.
    pub fn concat_rows(parts: &[&CudaWeight]) -> Result<Option<CudaWeight>> {
        let mut tensors = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                CudaWeight::Dense(t) => tensors.push(t),
                CudaWeight::Quant(_) | CudaWeight::Mxfp4(_) => return Ok(None),
            }
        }
        let Some(first) = tensors.first() else {
            return Ok(None);
        };
        if tensors.iter().any(|t| t.dims()[1..] != first.dims()[1..]) {
            return Ok(None);
        }
        Ok(Some(CudaWeight::Dense(Tensor::cat(&tensors, 0)?)))
    }

    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            CudaWeight::Dense(t) => Some(t),
            CudaWeight::Quant(_) | CudaWeight::Mxfp4(_) => None,
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            CudaWeight::Dense(t) => t.dims().to_vec(),
            CudaWeight::Quant(q) => q.shape().dims().to_vec(),
            CudaWeight::Mxfp4(m) => m.shape().to_vec(),
        }
    }

    /// `x @ self^T` for `x` `[tokens, in]` in `act`.
    pub fn matmul_t(&self, x: &Tensor, kernels: &Kernels) -> Result<Tensor> {
        match self {
            CudaWeight::Mxfp4(m) => kernels.mxfp4_matmul_t(x, m),
            CudaWeight::Dense(w) => Ok(x.matmul(&w.t()?)?),
            // candle's quantized CUDA kernels take f32 activations.
            CudaWeight::Quant(q) => {
                let y =
                    QMatMul::QTensor(q.clone()).forward(&x.to_dtype(DType::F32)?.contiguous()?)?;
                Ok(y.to_dtype(x.dtype())?)
            }
        }
    }

    /// Rows `ids` (u32 on the device) of an embedding table, in `act`.
    pub fn rows(&self, ids: &Tensor, act: DType, kernels: &Kernels) -> Result<Tensor> {
        match self {
            CudaWeight::Dense(t) => Ok(t.index_select(ids, 0)?),
            CudaWeight::Quant(q) => Ok(q.embedding(ids)?.to_dtype(act)?),
            // No model stores its embedding in MXFP4; expanded, should one ever.
            CudaWeight::Mxfp4(m) => Ok(kernels.mxfp4_expand(m, act)?.index_select(ids, 0)?),
        }
    }
}
