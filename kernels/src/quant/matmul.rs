//! y[M×N] = x[M×K] · Wᵀ: quantize x once, then split the work over rayon's pool.
//!
//! * Few activation rows (decode, short prompts): split over weight rows, so every weight byte
//!   is read from memory once per call however many threads share the work. With one row (or
//!   one task) the tasks write straight into y; with more, each task writes its own part of a
//!   scratch (row-major over its weight rows), copied into y as whole runs at the end.
//! * Many rows (prefill): split over activation rows; every task writes its own rows of y and
//!   walks all of W a few weight rows at a time, reusing each from L1 across its activation
//!   tiles (W itself stays in L3 between tasks).
//! * Several products at once (`run_many`): the ones split over weight rows put all their
//!   tasks in one parallel region.
use super::activations::{QuantizedRows, RowsView};
use super::formats::{ActFormat, QuantType};
use super::{panel, Input, Isa, Product, QuantError};
use rayon::prelude::*;
use std::cell::RefCell;

/// From this many activation rows on, VNNI CPUs repack all of W into lane-interleaved panels
/// first and split the product over activation rows (`by_panels`). Below it they repack one
/// panel at a time inside a split over weight rows (`RowSplit`): no W-sized scratch is
/// written and read back, which made 32-64 rows 1.5-3x faster (an LM head of 152k rows most),
/// while from a few hundred rows on the whole-W repack is 5-15% faster (`qbench`, Xeon VNNI,
/// 2 threads).
const PANEL_MIN_ROWS: usize = 256;
/// From this many activation rows on, VNNI CPUs use the panel kernels (a fused `RowSplit`):
/// with fewer rows the row tiles, which need no repack, are as fast or faster. Formats whose
/// blocks cost most to decode (Q5_0's fifth bits, MXFP4's lookup) gain from the repack sooner
/// (`qbench`, EPYC Zen 5, 1 thread, panels over tiles: Q5_0 4 rows 1.1-1.4x, 6 rows 1.5x;
/// MXFP4 4 rows 1.15x; Q8_0 / Q4_K / Q6_K 4 rows 0.7-0.9x, 6 rows 1.1-1.2x). On Zen 4, which
/// splits the panels' 512-bit operations, the crossover is likely later.
fn fused_panel_min_rows(ty: QuantType) -> usize {
    match ty {
        QuantType::Q5_0 | QuantType::Mxfp4 => 4,
        _ => 6,
    }
}
/// From this many activation rows on, AMX CPUs (`Isa::AmxBf16`) run the product on tiles in
/// bf16 (`x86::amx_gemm`); fewer run the VNNI kernels. Each task decodes its weight rows to
/// bf16 tiles, which at few rows costs as much as the tiles save (`qbench`, Xeon SPR VM, 2
/// threads, with the tile loads prefetched, AMX over VNNI: 16 rows 0.95-1.2x, 32 rows
/// 1.4-1.9x, 48 rows 1.2-2.0x, 64 rows 2.0-2.2x, 512 rows 3-5x).
pub const AMX_MIN_ROWS: usize = 32;
/// Below this many activation rows the work is split over weight rows (W read once in all).
const ROW_SPLIT_MIN: usize = 24;
/// Smallest weight slice (bytes × activation row tiles) worth a task of its own: a few µs of
/// work, well above rayon's cost of handing it to another thread.
const MIN_TASK_WORK: usize = 48 << 10;

/// Buffers kept per calling thread between calls: the quantized activations and the
/// transposed output. Taken out while in use, so a nested call cannot find them borrowed.
#[derive(Default)]
struct Scratch {
    act: QuantizedRows,
    /// A GLU input's rows (`Input::Glu`) for the kernels that read f32 rows.
    glu: Vec<f32>,
    yt: Vec<f32>,
    /// All of W repacked into panels (`by_panels`, from `PANEL_MIN_ROWS` rows on VNNI).
    #[cfg(target_arch = "x86_64")]
    panels: Vec<u8>,
}

impl Scratch {
    /// Quantize the `m` × `k` input to `format` into `act` (a GLU input computed into `glu`
    /// first, for the kernels that read rows).
    fn quantize_input(&mut self, format: ActFormat, x: Input<'_>, m: usize, k: usize) {
        let rows = match x {
            Input::Rows(x) => x,
            Input::Glu { gate, up, act } => {
                self.glu.resize(m * k, 0.0);
                crate::activation::glu(gate, up, act, &mut self.glu);
                &self.glu
            }
        };
        self.act.quantize(format, rows, m, k);
    }
}

/// The kernels that run products of fewer rows than `takes_amx` takes: VNNI on AMX CPUs.
fn row_kernels(isa: Isa) -> Isa {
    match isa {
        Isa::AmxBf16 => Isa::Avx512Vnni,
        other => other,
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// One `Scratch` per product of a `run_many` call.
    static SCRATCHES: RefCell<Vec<Scratch>> = const { RefCell::new(Vec::new()) };
    /// The one weight panel a fused `RowSplit` task has repacked (per worker thread).
    #[cfg(target_arch = "x86_64")]
    static PANEL: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Check the shapes, quantize x and run the product with `isa`.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: Input<'_>,
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    let row_bytes = check(ty, w, n, k, &x, m, y.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let threads = rayon::current_num_threads().max(1);
    #[cfg(target_arch = "x86_64")]
    if takes_amx(isa, m) {
        use super::x86::amx_gemm::{gemm, Weights};
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        gemm(Weights::Quant { ty, w, row_bytes }, n, k, x, m, y, threads);
        return Ok(());
    }
    let isa = row_kernels(isa);
    let format = activation_format(isa, ty, m);
    scratch.quantize_input(format, x, m, k);
    if splits_weight_rows(format, m) {
        let plan = RowSplit::new(isa, ty, w, n, row_bytes, &scratch.act, threads);
        over_weight_row_runs(y, &mut scratch.yt, n, m, plan.chunk, |t, out, stride| {
            plan.run(t, out, stride)
        });
    } else if matches!(format, ActFormat::Panel { .. }) {
        #[cfg(target_arch = "x86_64")]
        by_panels(
            ty,
            w,
            n,
            k,
            row_bytes,
            &scratch.act,
            y,
            &mut scratch.panels,
            threads,
        );
    } else {
        by_activation_rows(isa, ty, w, n, row_bytes, &scratch.act, y, threads);
    }
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
    Ok(())
}

/// The row length in bytes of a product's weights, or the error its buffers' sizes give.
#[allow(clippy::too_many_arguments)]
fn check(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &Input<'_>,
    m: usize,
    y_len: usize,
) -> Result<usize, QuantError> {
    let row_bytes = ty.row_bytes(k).ok_or(QuantError::RowLength {
        k,
        block: ty.block_elems(),
    })?;
    if w.len() != n * row_bytes {
        return Err(QuantError::WeightSize {
            got: w.len(),
            want: n * row_bytes,
            n,
            k,
            ty,
        });
    }
    if let Some(got) = x.wrong_length(m * k) {
        return Err(QuantError::InputSize {
            got,
            want: m * k,
            m,
            k,
        });
    }
    if y_len != m * n {
        return Err(QuantError::OutputSize {
            got: y_len,
            want: m * n,
        });
    }
    Ok(row_bytes)
}

/// Check every product, then run them: those split over weight rows (`RowSplit`: decode, short
/// prompts) in one parallel region over all their runs, each into its own buffers; the others
/// one after another, each large enough to fill the threads alone. Every product's runs are
/// cut as `run` cuts them, so each result has the bits `run` gives it.
pub(super) fn run_many(isa: Isa, products: &mut [Product<'_>]) -> Result<(), QuantError> {
    let row_bytes = products
        .iter()
        .map(|p| check(p.ty, p.w, p.n, p.k, &p.x, p.m, p.y.len()))
        .collect::<Result<Vec<_>, _>>()?;
    let threads = rayon::current_num_threads().max(1);
    let kernels = row_kernels(isa);
    let mut scratch = SCRATCHES.with(|s| std::mem::take(&mut *s.borrow_mut()));
    scratch.resize_with(products.len(), Scratch::default);
    let (mut plans, mut outs) = (Vec::new(), Vec::new());
    for ((p, s), &rb) in products.iter_mut().zip(scratch.iter_mut()).zip(&row_bytes) {
        let format = activation_format(kernels, p.ty, p.m);
        let empty = p.m == 0 || p.n == 0 || p.k == 0;
        if empty || takes_amx(isa, p.m) || !splits_weight_rows(format, p.m) {
            run(isa, p.ty, p.w, p.n, p.k, p.x, p.m, p.y)?;
            continue;
        }
        s.quantize_input(format, p.x, p.m, p.k);
        let Scratch { act, yt, .. } = s;
        let plan = RowSplit::new(kernels, p.ty, p.w, p.n, rb, act, threads);
        outs.push((&mut *p.y, yt, p.n, p.m, plan.chunk));
        plans.push(plan);
    }
    let runs: Vec<_> = outs
        .iter_mut()
        .enumerate()
        .flat_map(|(i, (y, yt, n, m, chunk))| {
            weight_row_runs(y, yt, *n, *m, *chunk)
                .into_iter()
                .map(move |(t, out, stride)| (i, t, out, stride))
        })
        .collect();
    runs.into_par_iter()
        .for_each(|(i, t, out, stride)| plans[i].run(t, out, stride));
    for (y, yt, n, m, chunk) in outs {
        if runs_in_scratch(n, m, chunk) {
            gather_parts(&yt[..n * m], y, chunk, m, n);
        }
    }
    SCRATCHES.with(|s| *s.borrow_mut() = scratch);
    Ok(())
}

/// Whether `run` (and `reference_for`, which mirrors it) multiplies `m` rows on AMX tiles.
pub(super) fn takes_amx(isa: Isa, m: usize) -> bool {
    isa == Isa::AmxBf16 && m >= AMX_MIN_ROWS && !crate::batch_invariant()
}

/// How `run` quantizes the activations for `isa`, `ty` and `m` rows: the weight type's own
/// format, except from `fused_panel_min_rows` rows on VNNI CPUs (repacked panels, `x86::panel`)
/// and at any count there in batch-invariant mode (below the panel count `x86::panel_rows`
/// gives the panels' bits without the repack).
pub fn activation_format(isa: Isa, ty: QuantType, m: usize) -> ActFormat {
    let panels = matches!(isa, Isa::Avx512Vnni | Isa::AmxBf16);
    if panels && (m >= fused_panel_min_rows(ty) || crate::batch_invariant()) {
        ty.panel_format()
    } else {
        ty.act_format()
    }
}

/// Rows per task: about `tasks_per_thread` tasks per thread, at least `MIN_TASK_WORK` of work
/// each, a multiple of `multiple`.
fn rows_per_task(total: usize, work_per_row: usize, threads: usize, multiple: usize) -> usize {
    let by_work = MIN_TASK_WORK.div_ceil(work_per_row.max(1));
    let by_balance = total.div_ceil(threads * 4);
    by_work
        .max(by_balance)
        .max(1)
        .next_multiple_of(multiple)
        .min(total.next_multiple_of(multiple))
}

/// Run `task(t, out, stride)` for each run t of `chunk` weight rows (`weight_row_runs`) and
/// put the results into y (`m` × `n`).
fn over_weight_row_runs<F>(
    y: &mut [f32],
    yt: &mut Vec<f32>,
    n: usize,
    m: usize,
    chunk: usize,
    task: F,
) where
    F: Fn(usize, &mut [f32], usize) + Sync,
{
    let runs = weight_row_runs(y, yt, n, m, chunk);
    if runs.len() == 1 {
        runs.into_iter()
            .for_each(|(t, out, stride)| task(t, out, stride));
    } else {
        runs.into_par_iter()
            .for_each(|(t, out, stride)| task(t, out, stride));
    }
    if runs_in_scratch(n, m, chunk) {
        gather_parts(&yt[..n * m], y, chunk, m, n);
    }
}

/// The runs of `chunk` weight rows (the last may be shorter) a product split over weight rows
/// is cut into, as (run t, where its products go, the stride between activation rows there):
/// y itself, row-major, when there is one run; each run's own part of y when there is one
/// activation row; otherwise each run's own part of the scratch `yt`, row-major over its weight
/// rows (activation row r's outputs contiguous), which `gather_parts` copies into y as whole
/// runs rather than element by element.
fn weight_row_runs<'y>(
    y: &'y mut [f32],
    yt: &'y mut Vec<f32>,
    n: usize,
    m: usize,
    chunk: usize,
) -> Vec<(usize, &'y mut [f32], usize)> {
    if chunk >= n {
        return vec![(0, y, n)];
    }
    if m == 1 {
        return y
            .chunks_mut(chunk)
            .enumerate()
            .map(|(t, out)| (t, out, 1))
            .collect();
    }
    task_parts(yt, n * m)
        .chunks_mut(chunk * m)
        .enumerate()
        .map(|(t, out)| {
            let stride = out.len() / m;
            (t, out, stride)
        })
        .collect()
}

/// Whether `weight_row_runs` puts a product's results in the scratch (then `gather_parts`).
fn runs_in_scratch(n: usize, m: usize, chunk: usize) -> bool {
    chunk < n && m > 1
}

/// The first `len` values of the scratch, grown if needed but not cleared: the tasks write
/// every value (an LM head's 16-row scratch is ~10 MB; zeroing it each step is pure traffic).
fn task_parts(yt: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if yt.len() < len {
        yt.resize(len, 0.0);
    }
    &mut yt[..len]
}

/// Copy the per-task parts of `yt` (task t: `m` rows of its up to `chunk` weight rows,
/// row-major) into y (`m` × `n`).
fn gather_parts(yt: &[f32], y: &mut [f32], chunk: usize, m: usize, n: usize) {
    for (t, part) in yt.chunks(chunk * m).enumerate() {
        let rows = part.len() / m;
        for (r, run) in part.chunks_exact(rows).enumerate() {
            let at = r * n + t * chunk;
            y[at..at + rows].copy_from_slice(run);
        }
    }
}

/// Whether a product of `m` activation rows quantized to `format` is split over weight rows
/// (`RowSplit`): below `ROW_SPLIT_MIN` rows, or `PANEL_MIN_ROWS` for the panel kernels.
fn splits_weight_rows(format: ActFormat, m: usize) -> bool {
    match format {
        ActFormat::Panel { .. } => m < PANEL_MIN_ROWS,
        _ => m < ROW_SPLIT_MIN,
    }
}

/// A product split over runs of `chunk` weight rows (decode, short prompts): every weight byte
/// is read from memory once however many threads share the work. On VNNI from
/// `fused_panel_min_rows` on (`fused`), each task repacks two panels of 8 weight rows at a
/// time into a buffer that stays in L1/L2 and runs it against all activation rows at once: W
/// is read and decoded once, and the product runs at the panel kernel's rate (the row tiles
/// decode every weight block once per four activation rows and convert every block product to
/// float on its own).
struct RowSplit<'a> {
    isa: Isa,
    ty: QuantType,
    w: &'a [u8],
    n: usize,
    row_bytes: usize,
    /// The quantized activations (`x.k` is K).
    x: RowsView<'a>,
    chunk: usize,
    fused: bool,
}

impl<'a> RowSplit<'a> {
    fn new(
        isa: Isa,
        ty: QuantType,
        w: &'a [u8],
        n: usize,
        row_bytes: usize,
        act: &'a QuantizedRows,
        threads: usize,
    ) -> Self {
        let m = act.m;
        let fused = matches!(act.format, Some(ActFormat::Panel { .. }));
        #[cfg(target_arch = "x86_64")]
        let multiple = if fused {
            super::x86::panel::GEMM_ROWS
        } else {
            4
        };
        #[cfg(not(target_arch = "x86_64"))]
        let multiple = 4;
        RowSplit {
            isa,
            ty,
            w,
            n,
            row_bytes,
            x: act.rows(0, m),
            chunk: rows_per_task(n, row_bytes * m.div_ceil(4), threads, multiple),
            fused,
        }
    }

    /// Task t's weight rows into `out` (activation row r's products at `r * stride`). With the
    /// Panel format, rows below `fused_panel_min_rows` (batch-invariant mode only) run the
    /// panels' arithmetic straight from the weight blocks, where a repack costs more than it
    /// saves.
    fn run(&self, t: usize, out: &mut [f32], stride: usize) {
        let first = t * self.chunk;
        let rows = self.chunk.min(self.n - first);
        let w = &self.w[first * self.row_bytes..(first + rows) * self.row_bytes];
        if self.fused {
            // Only VNNI quantizes activations for panels.
            #[cfg(target_arch = "x86_64")]
            if self.x.rows < fused_panel_min_rows(self.ty) {
                super::x86::panel_rows(self.ty, w, self.row_bytes, &self.x, out, stride);
            } else {
                self.fused_panels(w, rows, out, stride);
            }
            return;
        }
        panel(self.isa, self.ty, w, self.row_bytes, &self.x, out, stride);
    }

    /// `run` on VNNI from `fused_panel_min_rows` on: `rows` weight rows `w`, repacked
    /// the two panels of a `panel_gemm` step at a time.
    #[cfg(target_arch = "x86_64")]
    fn fused_panels(&self, w: &[u8], rows: usize, out: &mut [f32], stride: usize) {
        use super::x86::{panel, panel_gemm, prefetch, repack_panel};
        let (rb, k) = (self.row_bytes, self.x.k);
        let pb = panel::panel_bytes(k);
        PANEL.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(2 * pb, 0);
            for step in 0..rows.div_ceil(panel::GEMM_ROWS) {
                let lo = step * panel::GEMM_ROWS;
                let hi = (lo + panel::GEMM_ROWS).min(rows);
                let mut filled = 0;
                for (first, out) in (lo..hi).step_by(panel::ROWS).zip(buf.chunks_exact_mut(pb)) {
                    let last = (first + panel::ROWS).min(hi);
                    repack_panel(self.ty, &w[first * rb..last * rb], rb, k, out);
                    filled += pb;
                }
                let next = (hi + panel::GEMM_ROWS).min(rows);
                prefetch(&w[hi * rb..next * rb]);
                let cols = &mut out[lo..];
                panel_gemm(self.ty, &buf[..filled], hi - lo, k, &self.x, cols, stride);
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn by_activation_rows(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    n: usize,
    row_bytes: usize,
    act: &QuantizedRows,
    y: &mut [f32],
    threads: usize,
) {
    let m = act.m;
    let rows = rows_per_task(m, n * row_bytes / 4, threads, 4);
    y.par_chunks_mut(rows * n).enumerate().for_each(|(t, out)| {
        let x = act.rows(t * rows, out.len() / n);
        panel(isa, ty, w, row_bytes, &x, out, n);
    });
}

/// Repack W into panels of 8 rows (split over weight rows), then split the product over
/// activation rows; every task walks all panels, each reused from L1/L2 across its row tiles.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn by_panels(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    row_bytes: usize,
    act: &QuantizedRows,
    y: &mut [f32],
    panels: &mut Vec<u8>,
    threads: usize,
) {
    use super::x86::{panel, panel_gemm, repack_panel};
    let pb = panel::panel_bytes(k);
    let count = n.div_ceil(panel::ROWS);
    // Every byte is rewritten by `repack`: grow, never clear.
    if panels.len() < count * pb {
        panels.resize(count * pb, 0);
    }
    let panels = &mut panels[..count * pb];
    let per_task = rows_per_task(count, panel::ROWS * row_bytes, threads, 1);
    panels
        .par_chunks_mut(per_task * pb)
        .enumerate()
        .for_each(|(t, chunk)| {
            for (i, out) in chunk.chunks_exact_mut(pb).enumerate() {
                let first = (t * per_task + i) * panel::ROWS;
                let last = (first + panel::ROWS).min(n);
                repack_panel(
                    ty,
                    &w[first * row_bytes..last * row_bytes],
                    row_bytes,
                    k,
                    out,
                );
            }
        });
    let m = act.m;
    let rows = m.div_ceil(threads * 2).next_multiple_of(8).max(8);
    let panels = &panels[..];
    y.par_chunks_mut(rows * n).enumerate().for_each(|(t, out)| {
        let x = act.rows(t * rows, out.len() / n);
        panel_gemm(ty, panels, n, k, &x, out, n);
    });
}
