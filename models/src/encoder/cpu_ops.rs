//! candle ops backed by candor's encoder kernels (`candor_kernels::encoder`) on the CPU:
//! candle's own took as long as the products around them (a scalar erf, single-threaded bias
//! adds, a softmax and a dozen small products and copies per input and head).
use candle_core::{CpuStorage, Layout, Shape};

/// A projection's bias added to each row in place, then GELU where asked (`Some(tanh form)`).
pub(super) struct Bias<'a> {
    pub bias: &'a [f32],
    pub gelu: Option<bool>,
}

impl candle_core::InplaceOp1 for Bias<'_> {
    fn name(&self) -> &'static str {
        "bias"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let values = contiguous_mut(storage, layout, "bias")?;
        if values.len() % self.bias.len().max(1) != 0 || self.bias.is_empty() {
            candle_core::bail!(
                "bias: {} values are no rows of {}",
                values.len(),
                self.bias.len()
            );
        }
        candor_kernels::encoder::bias_rows(values, self.bias, self.gelu);
        Ok(())
    }
}

/// A gated feed-forward's middle: rows of `[gate | up]`, `2 · width` wide, to rows of
/// `act(gate) ⊙ up`, `width` wide; `act` SiLU, or the erf GELU with `gelu`.
pub(super) struct Gated {
    pub width: usize,
    pub gelu: bool,
}

impl candle_core::CustomOp1 for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let values = contiguous(storage, layout, "gated")?;
        let (rows, wide) = layout.shape().dims2()?;
        if self.width == 0 || wide != 2 * self.width {
            candle_core::bail!("gated: rows of {wide} are not gate|up of {}", self.width);
        }
        let mut out = vec![0.0; rows * self.width];
        candor_kernels::encoder::gated_rows(values, &mut out, self.width, self.gelu);
        Ok((CpuStorage::F32(out), Shape::from((rows, self.width))))
    }
}

/// Each input's attention over its own rows of the fused q|k|v projection
/// (`candor_kernels::encoder_attention`), its queries and keys turned by `rotary`'s angles
/// first where given, within `window` positions where given: `[tokens, 3·width]` to
/// `[tokens, width]`.
pub(super) struct Attention<'a> {
    pub spans: &'a [(usize, usize)],
    pub heads: usize,
    pub head_dim: usize,
    /// The `cos` and `sin` tables of the rotary positions.
    pub rotary: Option<(&'a [f32], &'a [f32])>,
    pub window: Option<usize>,
}

impl candle_core::CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "encoder-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous(storage, layout, "encoder-attention")?;
        let width = self.heads * self.head_dim;
        let tokens = qkv.len() / (3 * width).max(1);
        let turned;
        let qkv = match self.rotary {
            Some((cos, sin)) => {
                let mut rows = qkv.to_vec();
                let (spans, heads, dim) = (self.spans, self.heads, self.head_dim);
                candor_kernels::encoder_attention::rotate_queries_and_keys(
                    &mut rows, spans, heads, dim, cos, sin,
                )
                .map_err(candle_core::Error::msg)?;
                turned = rows;
                &turned[..]
            }
            None => qkv,
        };
        let mut out = vec![0f32; tokens * width];
        candor_kernels::encoder_attention::encoder_attention(
            qkv,
            self.spans,
            self.heads,
            self.head_dim,
            self.window,
            &mut out,
        )
        .map_err(candle_core::Error::msg)?;
        Ok((CpuStorage::F32(out), Shape::from((tokens, width))))
    }
}

/// `LayerNorm(x + residual)` over rows of `weight.len()`: a post-norm layer's residual add
/// and norm in one pass.
pub(super) struct AddLayerNorm<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub eps: f32,
}

impl candle_core::CustomOp2 for AddLayerNorm<'_> {
    fn name(&self) -> &'static str {
        "add-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x_values = contiguous(x, x_layout, "add-layer-norm")?;
        let residual = contiguous(residual, residual_layout, "add-layer-norm")?;
        let width = self.weight.len();
        if width == 0
            || x_values.len() % width != 0
            || residual.len() != x_values.len()
            || self.bias.len() != width
        {
            candle_core::bail!(
                "add-layer-norm: {} values for rows of {width}",
                x_values.len()
            );
        }
        let mut out = x_values.to_vec();
        candor_kernels::encoder::add_layer_norm(
            &mut out,
            residual,
            self.weight,
            self.bias,
            self.eps,
        );
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op}: f32 values only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous values only");
    };
    Ok(&values[start..end])
}

fn contiguous_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op}: f32 values only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous values only");
    };
    Ok(&mut values[start..end])
}
