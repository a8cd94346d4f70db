//! Plain-slice access to candle CPU tensors, so candor-kernels can work on them without a copy.
use candle_core::{DType, Device, Storage, Tensor};
use candor_models::error::Result;
use std::ops::Deref;

/// `f` over the f32 values of `t` in row-major order: borrowed when `t` is a contiguous f32
/// CPU tensor (every activation the decoder makes), copied otherwise.
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    Ok(f(values(t)?.get()))
}

/// The f32 values of a tensor held for as long as needed: `with_values` for several tensors
/// at once.
pub enum Values<'a> {
    /// A contiguous f32 CPU tensor's storage, read-locked (candle's lock guard), and its range.
    Borrowed {
        storage: Box<dyn Deref<Target = Storage> + 'a>,
        start: usize,
        end: usize,
    },
    Owned(Vec<f32>),
}

impl Values<'_> {
    pub fn get(&self) -> &[f32] {
        match self {
            // `values` checked that the storage holds f32 and the range.
            Values::Borrowed {
                storage,
                start,
                end,
            } => match &***storage {
                Storage::Cpu(cpu) => cpu
                    .as_slice::<f32>()
                    .map_or(&[][..], |all| &all[*start..*end]),
                _ => &[],
            },
            Values::Owned(v) => v,
        }
    }
}

/// The values of `t` in row-major order, borrowed or copied as `with_values` says.
pub fn values(t: &Tensor) -> Result<Values<'_>> {
    if t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            if cpu.as_slice::<f32>().is_ok_and(|all| end <= all.len()) {
                return Ok(Values::Borrowed {
                    storage: Box::new(storage),
                    start,
                    end,
                });
            }
        }
    }
    let copy = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(Values::Owned(copy))
}

/// A new tensor of shape `dims` filled by `fill` (which writes every element).
pub fn new_tensor(dims: &[usize], fill: impl FnOnce(&mut [f32])) -> Result<Tensor> {
    let mut out = vec![0f32; dims.iter().product()];
    fill(&mut out);
    Ok(Tensor::from_vec(out, dims, &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_contiguous_views_and_copies_the_rest() {
        let t = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        assert_eq!(
            with_values(&t, |v| v.to_vec()).unwrap(),
            (0..12).map(|i| i as f32).collect::<Vec<_>>()
        );
        // A row range is contiguous at an offset; a transpose is not contiguous.
        let rows = t.narrow(0, 1, 2).unwrap();
        assert_eq!(with_values(&rows, |v| v.to_vec()).unwrap()[0], 4.0);
        let tt = t.t().unwrap();
        assert_eq!(
            with_values(&tt, |v| v[..3].to_vec()).unwrap(),
            vec![0.0, 4.0, 8.0]
        );
        let half = t.to_dtype(DType::F16).unwrap();
        assert_eq!(with_values(&half, |v| v[11]).unwrap(), 11.0);
    }
}
