//! Ranges of dimension 1 of candle tensors, shared by the backends built on candle (CPU, CUDA).
use candle_core::Tensor;
use candor_models::error::{ModelError, Result};

/// Consecutive ranges of dimension 1 of a 2-D or 3-D tensor, `sizes` long: narrowed views of
/// whole rows at the input's row stride (contiguous when the tensor has one row, as in
/// single-sequence decode).
pub fn split_dim1(x: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let dims = x.dims();
    let total: usize = sizes.iter().sum();
    if !(2..=3).contains(&dims.len()) || dims[1] != total {
        return Err(ModelError::Backend(format!(
            "split: {dims:?} into sizes {sizes:?} along dimension 1"
        )));
    }
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            let part = x.narrow(1, start, n)?;
            start += n;
            Ok(part)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn ranges_come_back_in_order_and_bad_sizes_are_errors() {
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 6))
            .unwrap();
        let parts = split_dim1(&x, &[3, 1, 2]).unwrap();
        let rows: Vec<Vec<Vec<f32>>> = parts.iter().map(|p| p.to_vec2().unwrap()).collect();
        assert_eq!(rows[0], vec![vec![0.0, 1.0, 2.0], vec![6.0, 7.0, 8.0]]);
        assert_eq!(rows[1], vec![vec![3.0], vec![9.0]]);
        assert_eq!(rows[2], vec![vec![4.0, 5.0], vec![10.0, 11.0]]);
        // As heads of 2: [2, 3, 2] into 2 + 1 heads.
        let heads = split_dim1(&x.reshape((2, 3, 2)).unwrap(), &[2, 1]).unwrap();
        assert_eq!(heads[1].dims(), &[2, 1, 2]);
        assert_eq!(
            heads[1].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![4.0, 5.0, 10.0, 11.0]
        );
        // One row: every range is contiguous.
        let one = x.narrow(0, 1, 1).unwrap();
        assert!(split_dim1(&one, &[4, 2])
            .unwrap()
            .iter()
            .all(|p| p.is_contiguous()));
        assert!(split_dim1(&x, &[3, 2]).is_err());
        assert!(split_dim1(&x.flatten_all().unwrap(), &[12]).is_err());
    }
}
