//! `Backend::linear_many` on the CPU: the products candor-kernels takes (GGML blocks of its
//! types, whole blocks a row) run as one grouped call, `quant::matmul_many`, whose decode-sized
//! products share one parallel region; the others (dense, 16-bit, candle's block types) run
//! one by one as `linear` runs them.
use super::values::{values, Values};
use super::{err, with_bias, CpuBackend, CpuWeight, ProductDims};
use candle_core::{Device, Tensor};
use candor_kernels::activation::Act;
use candor_kernels::quant::{self, Input, Product, QuantType};
use candor_models::error::Result;
use candor_models::projection::{run_linear_job, LinearJob, ProductInput};
use std::borrow::Cow;

/// A weight as the kernels read it: N rows of K elements of `ty`.
struct KernelWeight<'w> {
    data: Cow<'w, [u8]>,
    n: usize,
    k: usize,
    ty: QuantType,
}

/// `w` as the kernels read it, where they do (as `linear` decides: rows that are not whole
/// blocks go to candle's product).
fn kernel_weight(w: &CpuWeight) -> Result<Option<KernelWeight<'_>>> {
    let (data, shape, ty) = match w {
        CpuWeight::Mapped { blocks, ty } => (Cow::Borrowed(blocks.bytes()), &blocks.shape[..], *ty),
        CpuWeight::Quant {
            q, fast: Some(ty), ..
        } => (q.data()?, q.shape().dims(), *ty),
        _ => return Ok(None),
    };
    match shape[..] {
        [n, k] if ty.row_bytes(k).is_some() => Ok(Some(KernelWeight { data, n, k, ty })),
        _ => Ok(None),
    }
}

/// A grouped job's input values (the GLU's two halves, or the rows) and its sizes.
struct Operands<'t> {
    values: Vec<Values<'t>>,
    act: Option<Act>,
    dims: ProductDims,
}

fn operands<'t>(input: ProductInput<'t, Tensor>, w: &KernelWeight<'_>) -> Result<Operands<'t>> {
    let (values, act, dims) = match input {
        ProductInput::Rows(x) => (vec![values(x)?], None, x.dims()),
        ProductInput::Glu { gate, up, act } => {
            if gate.dims() != up.dims() {
                return Err(err(format!(
                    "glu: {:?} against {:?}",
                    gate.dims(),
                    up.dims()
                )));
            }
            let halves = vec![values(gate)?, values(up)?];
            (halves, Some(super::kernel_act(act)), gate.dims())
        }
    };
    Ok(Operands {
        values,
        act,
        dims: ProductDims::new(dims, &[w.n, w.k])?,
    })
}

pub(super) fn linear_many(
    b: &CpuBackend,
    jobs: &[LinearJob<'_, CpuBackend>],
) -> Result<Vec<Tensor>> {
    let mut done: Vec<Option<Tensor>> = vec![None; jobs.len()];
    let mut grouped = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match kernel_weight(job.w)? {
            Some(w) if jobs.len() > 1 => grouped.push((i, w)),
            _ => done[i] = Some(run_linear_job(b, job)?),
        }
    }
    let operands = grouped
        .iter()
        .map(|(i, w)| operands(jobs[*i].input, w))
        .collect::<Result<Vec<_>>>()?;
    let mut outputs: Vec<Vec<f32>> = operands
        .iter()
        .map(|o| vec![0f32; o.dims.m * o.dims.n])
        .collect();
    let mut products: Vec<Product<'_>> = grouped
        .iter()
        .zip(&operands)
        .zip(outputs.iter_mut())
        .map(|(((_, w), o), y)| Product {
            ty: w.ty,
            w: &w.data,
            n: w.n,
            k: w.k,
            x: match (&o.values[..], o.act) {
                ([gate, up], Some(act)) => Input::Glu {
                    gate: gate.get(),
                    up: up.get(),
                    act,
                },
                (rows, _) => Input::Rows(rows.first().map_or(&[][..], |v| v.get())),
            },
            m: o.dims.m,
            y,
        })
        .collect();
    quant::matmul_many(&mut products).map_err(err)?;
    drop(products);
    for (((i, _), o), y) in grouped.iter().zip(operands).zip(outputs) {
        let y = Tensor::from_vec(y, o.dims.out, &Device::Cpu)?;
        done[*i] = Some(with_bias(y, jobs[*i].bias)?);
    }
    done.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| err("linear_many: a product was not run"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::DType;
    use candor_models::backend::{Activation, Backend};
    use candor_models::weights::{BlockType, HostWeight, MappedBlocks};

    fn value(i: usize) -> f32 {
        ((i * 7919) % 401) as f32 / 200.0 - 1.0
    }

    fn tensor(n: usize, k: usize, salt: usize) -> Tensor {
        let v: Vec<f32> = (0..n * k).map(|i| value(i + salt)).collect();
        Tensor::from_vec(v, (n, k), &Device::Cpu).unwrap()
    }

    fn quantized(t: &Tensor, dtype: GgmlDType) -> CpuWeight {
        CpuWeight::from_host(HostWeight::Quant(QTensor::quantize(t, dtype).unwrap())).unwrap()
    }

    /// Blocks read in place (the GGUF path), from a quantized copy's bytes.
    fn mapped(t: &Tensor, dtype: GgmlDType) -> CpuWeight {
        let q = QTensor::quantize(t, dtype).unwrap();
        let blocks = MappedBlocks::owned(
            &q.data().unwrap(),
            BlockType::Ggml(dtype),
            t.dims().to_vec(),
        );
        CpuWeight::from_host(HostWeight::Mapped(blocks.unwrap())).unwrap()
    }

    /// Every job run together gives the bits it gets alone, whatever its weight (blocks the
    /// kernels read, mapped or held; candle's block types; dense f32; bf16), input (rows or a
    /// GLU's halves) and bias.
    #[test]
    fn products_run_together_give_the_bits_of_each_alone() {
        let b = CpuBackend::new(2);
        let (n, k) = (300, 512);
        let weights = [
            mapped(&tensor(n, k, 1), GgmlDType::Q4K),
            mapped(&tensor(n, k, 2), GgmlDType::Q8_0),
            quantized(&tensor(n, k, 3), GgmlDType::Q6K),
            quantized(&tensor(n, k, 4), GgmlDType::Q2K),
            CpuWeight::from_host(HostWeight::Dense {
                tensor: tensor(n, k, 5).to_dtype(DType::BF16).unwrap(),
                source: candor_models::backend::WeightDtype::BF16,
            })
            .unwrap(),
            CpuWeight::Dense(tensor(n, k, 6)),
        ];
        let bias = CpuWeight::Dense(tensor(1, n, 7).flatten_all().unwrap());
        for m in [1, 3, 40] {
            let (x, gate, up) = (tensor(m, k, 8), tensor(m, k, 9), tensor(m, k, 10));
            let mut jobs = Vec::new();
            for (i, w) in weights.iter().enumerate() {
                let with_bias = (i % 2 == 0).then_some(&bias);
                jobs.push(LinearJob::rows(&x, w, with_bias));
                for bias in [None, with_bias] {
                    let act = Activation::Silu;
                    let input = ProductInput::Glu {
                        gate: &gate,
                        up: &up,
                        act,
                    };
                    jobs.push(LinearJob { input, w, bias });
                }
            }
            let together = b.linear_many(&jobs).unwrap();
            assert_eq!(together.len(), jobs.len());
            for (j, (job, got)) in jobs.iter().zip(&together).enumerate() {
                let want = run_linear_job(&b, job).unwrap();
                assert_eq!(got.dims(), want.dims(), "job {j}, {m} rows");
                let (got, want) = (b.download(got).unwrap(), b.download(&want).unwrap());
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "job {j}, {m} rows");
            }
        }
    }

    /// A job whose input does not fit its weight is an error for the whole call, not a panic.
    #[test]
    fn a_misshapen_job_is_an_error() {
        let b = CpuBackend::new(2);
        let w = mapped(&tensor(64, 256, 1), GgmlDType::Q4K);
        let (x, wrong) = (tensor(2, 256, 2), tensor(2, 255, 3));
        let jobs = [
            LinearJob::rows(&x, &w, None),
            LinearJob::rows(&wrong, &w, None),
        ];
        assert!(b.linear_many(&jobs).is_err());
        let halves = [LinearJob {
            input: ProductInput::Glu {
                gate: &x,
                up: &wrong,
                act: Activation::Silu,
            },
            w: &w,
            bias: None,
        }];
        assert!(b.linear_many(&[jobs[0], halves[0]]).is_err());
    }
}
