//! Rows a kernel can read in place: a tensor whose rows (dimension 0) are each contiguous but
//! may lie further apart than their length, as the members of a joined projection do (ranges of
//! the joined product's columns or heads). Host logic on candle layouts, built in every build.
use candle_core::Layout;

/// Rows of `row` elements, `stride` elements apart, starting at a tensor's first element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub row: usize,
    pub stride: usize,
}

/// How `layout` lays out its rows (dimension 0) when each row (the other dimensions) is
/// contiguous but rows may be further apart: a range of a wider tensor's columns or heads, as
/// the members of a joined projection are. None when a row itself is strided.
pub fn rows_of(layout: &Layout) -> Option<Rows> {
    let (dims, strides) = (layout.dims(), layout.stride());
    let (&tokens, inner) = dims.split_first()?;
    if !candle_core::Shape::from(inner).is_contiguous(&strides[1..]) {
        return None;
    }
    let row: usize = inner.iter().product();
    let stride = if tokens <= 1 { row } else { strides[0] };
    (stride >= row).then_some(Rows { row, stride })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn rows_of_narrowed_columns_and_heads_keep_their_stride() {
        let x = Tensor::zeros((4, 10, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            rows_of(x.layout()),
            Some(Rows {
                row: 80,
                stride: 80
            })
        );
        // Heads 6..8 of 10: rows of 2 heads, 10 heads apart.
        let v = x.narrow(1, 6, 2).unwrap();
        assert_eq!(
            rows_of(v.layout()),
            Some(Rows {
                row: 16,
                stride: 80
            })
        );
        // One token: the stride does not matter.
        let one = v.narrow(0, 2, 1).unwrap();
        assert_eq!(
            rows_of(one.layout()),
            Some(Rows {
                row: 16,
                stride: 16
            })
        );
        // Columns of a 2-D tensor.
        let m = x.reshape((4, 80)).unwrap().narrow(1, 40, 40).unwrap();
        assert_eq!(
            rows_of(m.layout()),
            Some(Rows {
                row: 40,
                stride: 80
            })
        );
        // Part of each head: a row is not contiguous.
        assert_eq!(rows_of(x.narrow(2, 0, 4).unwrap().layout()), None);
        // A transpose is not rows.
        assert_eq!(
            rows_of(x.reshape((4, 80)).unwrap().t().unwrap().layout()),
            None
        );
    }
}
