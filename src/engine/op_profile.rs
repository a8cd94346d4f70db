//! Where a forward pass spends its time, op by op (`candor bench --profile-ops`).
//!
//! `Profiled<B>` is a `Backend` that hands every call to `B`. While its `OpProfiler` is
//! switched on, each op is followed by `B::synchronize` and its wall time is added to that op's
//! row (matrix products by weight shape: `linear 14336x4096`; `glu_linear 4096x14336` for the
//! FFN's down projection with its GLU, `rms_norm_linear 28672x4096` for a norm and the joined
//! projection that reads it, `rms_norm_qkv_rope_write_kv 6144x4096` for the attention input:
//! norm, q/k/v, RoPE and KV write), so queued devices (CUDA, plugins) are charged for their own work rather than for whatever happened to block next. The
//! synchronisation costs time of its own, and work that would overlap the next op's launch no
//! longer does: a profiled pass is slower than a timed one. The rows are for comparing ops with
//! each other, and the difference between the pass and the sum of its ops is the host's share
//! (batch building, uploads of block tables, sampling). Switched off, the wrapper costs one
//! atomic load per op.
use candor_models::backend::{
    Activation, AttentionParams, Backend, ConvTaps, DeviceInfo, KvCacheSpec, OpDesc, QkvHeads,
    RopeKvWrite, RopeSpec, ShortConvWeights,
};
use candor_models::batch::SeqAttention;
use candor_models::error::Result;
use candor_models::kv_rows::KvRows;
use candor_models::projection::{LinearJob, NormedInput};
use candor_models::weights::HostWeight;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The time one op (or one matrix shape) took over a profiled stretch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpTime {
    pub op: String,
    pub calls: u64,
    pub seconds: f64,
}

/// Shared switch and tally of a `Profiled` backend.
#[derive(Debug, Default)]
pub struct OpProfiler {
    on: AtomicBool,
    rows: Mutex<HashMap<String, (u64, Duration)>>,
}

impl OpProfiler {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn record(&self, op: String, took: Duration) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows.entry(op).or_default();
        row.0 += 1;
        row.1 += took;
    }

    /// The rows gathered since the last call, slowest first; the tally starts again empty.
    pub fn take(&self) -> Vec<OpTime> {
        let rows = std::mem::take(&mut *self.rows.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out: Vec<OpTime> = rows
            .into_iter()
            .map(|(op, (calls, took))| OpTime {
                op,
                calls,
                seconds: took.as_secs_f64(),
            })
            .collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.op.cmp(&b.op)));
        out
    }
}

/// `B` with every op timed while the profiler is on.
pub struct Profiled<B> {
    inner: B,
    profiler: Arc<OpProfiler>,
}

impl<B: Backend> Profiled<B> {
    pub fn new(inner: B, profiler: Arc<OpProfiler>) -> Self {
        Profiled { inner, profiler }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Run `f`; when profiling, wait for the device and charge the time to `name()`.
    fn timed<T>(
        &self,
        name: impl FnOnce() -> String,
        f: impl FnOnce(&B) -> Result<T>,
    ) -> Result<T> {
        if !self.profiler.enabled() {
            return f(&self.inner);
        }
        let t0 = Instant::now();
        let out = f(&self.inner)?;
        self.inner.synchronize()?;
        self.profiler.record(name(), t0.elapsed());
        Ok(out)
    }

    /// A matrix product's row: `kind` and the weight's shape (`linear 14336x4096`).
    fn product_name(&self, kind: &str, w: &B::Weight) -> String {
        format!("{kind} {}", self.weight_dims(w))
    }

    /// A weight's shape as `14336x4096`.
    fn weight_dims(&self, w: &B::Weight) -> String {
        let dims: Vec<String> = self
            .inner
            .weight_shape(w)
            .iter()
            .map(usize::to_string)
            .collect();
        dims.join("x")
    }
}

/// A norm input of the wrapper as one of the backend it wraps (the same tensors and weights).
fn unwrapped<B: Backend>(input: NormedInput<'_, Profiled<B>>) -> NormedInput<'_, B> {
    NormedInput {
        x: input.x,
        residual: input.residual,
        norm: input.norm,
        eps: input.eps,
    }
}

fn op(name: &'static str) -> impl FnOnce() -> String {
    move || name.to_string()
}

impl<B: Backend> Backend for Profiled<B> {
    type Tensor = B::Tensor;
    type Weight = B::Weight;
    type KvCache = B::KvCache;

    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }

    fn supports(&self, op: &OpDesc) -> bool {
        self.inner.supports(op)
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Self::Tensor> {
        self.timed(op("upload"), |b| b.upload(data, shape))
    }

    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>> {
        self.timed(op("download"), |b| b.download(t))
    }

    fn shape(&self, t: &Self::Tensor) -> Vec<usize> {
        self.inner.shape(t)
    }

    fn reshape(&self, t: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor> {
        self.inner.reshape(t, shape)
    }

    fn load_weight(&self, w: HostWeight) -> Result<Self::Weight> {
        self.inner.load_weight(w)
    }

    fn weight_shape(&self, w: &Self::Weight) -> Vec<usize> {
        self.inner.weight_shape(w)
    }

    fn alloc_kv_cache(&self, spec: &KvCacheSpec) -> Result<Self::KvCache> {
        self.inner.alloc_kv_cache(spec)
    }

    fn copy_kv_blocks(&self, cache: &mut Self::KvCache, copies: &[(u32, u32)]) -> Result<()> {
        self.timed(op("copy_kv_blocks"), |b| b.copy_kv_blocks(cache, copies))
    }

    fn read_kv_rows(&self, cache: &Self::KvCache, slots: &[u32]) -> Result<KvRows> {
        self.inner.read_kv_rows(cache, slots)
    }

    fn write_kv_rows(&self, cache: &mut Self::KvCache, slots: &[u32], rows: &KvRows) -> Result<()> {
        self.inner.write_kv_rows(cache, slots, rows)
    }

    fn concat_weights(&self, parts: &[&Self::Weight]) -> Result<Option<Self::Weight>> {
        self.inner.concat_weights(parts)
    }

    fn run_step<R: Send>(&self, step: impl FnOnce() -> R + Send) -> R {
        self.inner.run_step(step)
    }

    fn split(&self, x: &Self::Tensor, sizes: &[usize]) -> Result<Vec<Self::Tensor>> {
        self.timed(op("split"), |b| b.split(x, sizes))
    }

    fn kv_bytes_per_value(&self) -> f64 {
        self.inner.kv_bytes_per_value()
    }

    fn embedding(&self, table: &Self::Weight, ids: &[u32]) -> Result<Self::Tensor> {
        self.timed(op("embedding"), |b| b.embedding(table, ids))
    }

    fn rms_norm(&self, x: &Self::Tensor, w: &Self::Weight, eps: f32) -> Result<Self::Tensor> {
        self.timed(op("rms_norm"), |b| b.rms_norm(x, w, eps))
    }

    fn activate(&self, x: &Self::Tensor, act: Activation) -> Result<Self::Tensor> {
        self.timed(op("activate"), |b| b.activate(x, act))
    }

    fn layer_norm(
        &self,
        x: &Self::Tensor,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
        eps: f32,
    ) -> Result<Self::Tensor> {
        self.timed(op("layer_norm"), |b| b.layer_norm(x, w, bias, eps))
    }

    fn short_conv(
        &self,
        cache: &Self::KvCache,
        taps: &ConvTaps<'_>,
        w: &ShortConvWeights,
    ) -> Result<Self::Tensor> {
        self.timed(op("short_conv"), |b| b.short_conv(cache, taps, w))
    }

    fn add_rms_norm(
        &self,
        x: &Self::Tensor,
        residual: &Self::Tensor,
        w: &Self::Weight,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        self.timed(op("add_rms_norm"), |b| b.add_rms_norm(x, residual, w, eps))
    }

    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
    ) -> Result<Self::Tensor> {
        self.timed(|| self.product_name("linear", w), |b| b.linear(x, w, bias))
    }

    fn linear_many(&self, jobs: &[LinearJob<'_, Self>]) -> Result<Vec<Self::Tensor>> {
        let inner: Vec<LinearJob<'_, B>> = jobs
            .iter()
            .map(|j| LinearJob {
                input: j.input,
                w: j.w,
                bias: j.bias,
            })
            .collect();
        let name = || {
            let shapes: Vec<String> = jobs.iter().map(|j| self.weight_dims(j.w)).collect();
            match shapes.split_first() {
                Some((first, rest)) if rest.iter().all(|s| s == first) => {
                    format!("linear_many {}x {first}", shapes.len())
                }
                _ => format!("linear_many {}", shapes.join("+")),
            }
        };
        self.timed(name, |b| b.linear_many(&inner))
    }

    fn rms_norm_linear(
        &self,
        input: NormedInput<'_, Self>,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let input = unwrapped(input);
        self.timed(
            || self.product_name("rms_norm_linear", w),
            |b| b.rms_norm_linear(input, w, bias),
        )
    }

    fn glu_linear(
        &self,
        gate: &Self::Tensor,
        up: &Self::Tensor,
        act: Activation,
        w: &Self::Weight,
    ) -> Result<Self::Tensor> {
        self.timed(
            || self.product_name("glu_linear", w),
            |b| b.glu_linear(gate, up, act, w),
        )
    }

    fn rope(&self, x: &Self::Tensor, positions: &[u32], rope: &RopeSpec) -> Result<Self::Tensor> {
        self.timed(op("rope"), |b| b.rope(x, positions, rope))
    }

    fn rope_qk_write_kv(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        kv: RopeKvWrite<'_, Self::KvCache>,
    ) -> Result<Self::Tensor> {
        self.timed(op("rope_qk_write_kv"), |b| b.rope_qk_write_kv(q, k, v, kv))
    }

    fn rms_norm_qkv_rope_write_kv(
        &self,
        input: NormedInput<'_, Self>,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
        heads: QkvHeads,
        kv: RopeKvWrite<'_, Self::KvCache>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let input = unwrapped(input);
        self.timed(
            || self.product_name("rms_norm_qkv_rope_write_kv", w),
            |b| b.rms_norm_qkv_rope_write_kv(input, w, bias, heads, kv),
        )
    }

    fn kv_write(
        &self,
        cache: &mut Self::KvCache,
        layer: usize,
        k: &Self::Tensor,
        v: &Self::Tensor,
        slots: &[u32],
    ) -> Result<()> {
        self.timed(op("kv_write"), |b| b.kv_write(cache, layer, k, v, slots))
    }

    fn paged_attention(
        &self,
        q: &Self::Tensor,
        cache: &Self::KvCache,
        layer: usize,
        seqs: &[SeqAttention],
        block_size: usize,
        params: &AttentionParams,
    ) -> Result<Self::Tensor> {
        self.timed(op("paged_attention"), |b| {
            b.paged_attention(q, cache, layer, seqs, block_size, params)
        })
    }

    fn glu(&self, gate: &Self::Tensor, up: &Self::Tensor, act: Activation) -> Result<Self::Tensor> {
        self.timed(op("glu"), |b| b.glu(gate, up, act))
    }

    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.timed(op("add"), |be| be.add(a, b))
    }

    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.timed(op("mul"), |be| be.mul(a, b))
    }

    fn scale(&self, x: &Self::Tensor, s: f32) -> Result<Self::Tensor> {
        self.timed(op("scale"), |b| b.scale(x, s))
    }

    fn softcap(&self, x: &Self::Tensor, cap: f32) -> Result<Self::Tensor> {
        self.timed(op("softcap"), |b| b.softcap(x, cap))
    }

    fn softmax(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.timed(op("softmax"), |b| b.softmax(x))
    }

    fn gather_rows(&self, x: &Self::Tensor, rows: &[u32]) -> Result<Self::Tensor> {
        self.timed(op("gather_rows"), |b| b.gather_rows(x, rows))
    }

    fn argmax(&self, x: &Self::Tensor) -> Result<Vec<u32>> {
        self.timed(op("argmax"), |b| b.argmax(x))
    }

    fn heads_linear(&self, x: &Self::Tensor, w: &Self::Weight) -> Result<Self::Tensor> {
        self.timed(op("heads_linear"), |b| b.heads_linear(x, w))
    }

    fn add_rows_scaled(
        &self,
        acc: &Self::Tensor,
        rows: &[u32],
        x: &Self::Tensor,
        weights: &[f32],
    ) -> Result<Self::Tensor> {
        self.timed(op("add_rows_scaled"), |b| {
            b.add_rows_scaled(acc, rows, x, weights)
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    fn fallback_ops(&self) -> Vec<(&'static str, u64)> {
        self.inner.fallback_ops()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn counts_ops_only_while_enabled_and_names_matrices_by_shape() {
        let profiler = OpProfiler::new();
        let b = Profiled::new(CpuBackend::new(1), profiler.clone());
        let x = b.upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let tensor =
            candle_core::Tensor::from_vec(vec![0.5f32; 12], (4, 3), &candle_core::Device::Cpu)
                .unwrap();
        let w = b
            .load_weight(HostWeight::Dense {
                tensor,
                source: candor_models::backend::WeightDtype::F32,
            })
            .unwrap();
        b.linear(&x, &w, None).unwrap();
        assert!(profiler.take().is_empty(), "nothing is recorded while off");

        profiler.set_enabled(true);
        let y = b.linear(&x, &w, None).unwrap();
        b.linear(&x, &w, None).unwrap();
        assert_eq!(
            b.download(&y).unwrap(),
            vec![3.0, 3.0, 3.0, 3.0, 7.5, 7.5, 7.5, 7.5]
        );
        let rows = profiler.take();
        let calls: HashMap<&str, u64> = rows.iter().map(|r| (r.op.as_str(), r.calls)).collect();
        assert_eq!(calls, HashMap::from([("linear 4x3", 2), ("download", 1)]));
        assert!(rows.iter().all(|r| r.seconds >= 0.0));
        assert!(profiler.take().is_empty(), "take starts the tally again");
    }
}
