//! Launching rope_kv_write.cu: a layer's RoPE of q and k and its KV write in one launch.
use super::error::CudaError;
use super::kernels::{launch_err, Kernels, RopeArgs};
use super::launch::{self, as_i32};
use super::tensors::{
    alloc_out, config, rows_view, view, with_contiguous_rows, with_kernel_dtype, wrap, KernelDType,
};
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{CudaStorage, Tensor};
use candor_models::backend::RopeStyle;
use candor_models::error::Result;

/// Where the rotated k and the v go: one layer's cache buffers, the token's slots (u32 on the
/// device, validated by the caller) and the number of slots the buffers hold.
pub struct KvTarget<'a> {
    pub k_cache: &'a mut CudaStorage,
    pub v_cache: &'a mut CudaStorage,
    pub slots: Tensor,
    pub num_slots: usize,
}

impl Kernels {
    /// RoPE of `q` (`[tokens, heads, head_dim]`) and `k` (`[tokens, kv_heads, head_dim]`), the
    /// rotated `k` and `v` (as `k`) written into `target`; returns the rotated `q`. q, k and v
    /// may be rows at a stride (views of a joined q/k/v product).
    pub fn rope_kv_write(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        rope: &RopeArgs,
        target: KvTarget,
    ) -> Result<Tensor> {
        with_kernel_dtype!(q.dtype(), T, {
            self.rope_kv_write_t::<T>(q, k, v, rope, target)
        })
    }

    fn rope_kv_write_t<T: KernelDType>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        a: &RopeArgs,
        target: KvTarget,
    ) -> Result<Tensor> {
        let bad = |what: String| -> candor_models::ModelError {
            CudaError::Launch(format!("rope_kv_write: {what}")).into()
        };
        let (&[t, h, d], &[kt, kh, kd]) = (q.dims(), k.dims()) else {
            return Err(bad(format!("q {:?}, k {:?}", q.dims(), k.dims())));
        };
        if kt != t || kd != d || v.dims() != k.dims() {
            return Err(bad(format!(
                "q {:?}, k {:?}, v {:?}",
                q.dims(),
                k.dims(),
                v.dims()
            )));
        }
        if k.dtype() != q.dtype() || v.dtype() != q.dtype() {
            return Err(bad("q, k and v of different dtypes".into()));
        }
        let (positions, slots) = (a.positions.elem_count(), target.slots.elem_count());
        if positions != t || slots != t || a.inv_freq.elem_count() * 2 != d {
            return Err(bad(format!(
                "{t} tokens, {positions} positions, {slots} slots, head_dim {d}, {} frequencies",
                a.inv_freq.elem_count()
            )));
        }
        if t == 0 {
            return Ok(q.clone());
        }
        let kv_row = kh * d;
        let k_cache = target.k_cache.as_cuda_slice_mut::<T>()?;
        let v_cache = target.v_cache.as_cuda_slice_mut::<T>()?;
        let num_slots = target.num_slots;
        if k_cache.len() < num_slots * kv_row || v_cache.len() < num_slots * kv_row {
            return Err(bad("the cache is smaller than its slots".into()));
        }
        let (q, k, v) = (
            with_contiguous_rows(q)?,
            with_contiguous_rows(k)?,
            with_contiguous_rows(v)?,
        );
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (ps, pl) = a.positions.storage_and_layout();
        let (ss, sl) = target.slots.storage_and_layout();
        let (fs, fl) = a.inv_freq.storage_and_layout();
        let (qv, q_rows) = rows_view::<T>(&qs, ql)?;
        let (kv, k_rows) = rows_view::<T>(&ks, kl)?;
        let (vv, v_rows) = rows_view::<T>(&vs, vl)?;
        let (pv, sv, fv) = (
            view::<u32>(&ps, pl)?,
            view::<u32>(&ss, sl)?,
            view::<f32>(&fs, fl)?,
        );
        let mut q_out = alloc_out::<T>(&self.dev, t * h * d)?;
        let ints = [
            as_i32(h, "heads")?,
            as_i32(kh, "KV heads")?,
            as_i32(d, "head_dim")?,
            as_i32(q_rows.stride, "q row stride")?,
            as_i32(k_rows.stride, "k row stride")?,
            as_i32(v_rows.stride, "v row stride")?,
            i32::from(a.style == RopeStyle::Interleaved),
        ];
        let num_slots = u32::try_from(num_slots).map_err(launch_err)?;
        let f = self.func("rope_kv_write", &format!("rope_kv_write_{}", T::SUFFIX))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&qv)
            .arg(&kv)
            .arg(&vv)
            .arg(&mut q_out)
            .arg(k_cache)
            .arg(v_cache)
            .arg(&pv)
            .arg(&sv)
            .arg(&fv);
        for i in &ints {
            b.arg(i);
        }
        b.arg(&a.mscale).arg(&num_slots);
        // SAFETY: argument types and order match rope_kv_write_<T> in rope_kv_write.cu (heads,
        // kv_heads, head_dim, the three strides, interleaved: ints; then mscale, num_slots);
        // slots past `num_slots` write nothing.
        let items = (h + kh) * d / 2;
        unsafe { b.launch(config(launch::per_row(t, items.max(kv_row))?)) }.map_err(launch_err)?;
        Ok(wrap(q_out, &self.dev, &[t, h, d]))
    }
}
