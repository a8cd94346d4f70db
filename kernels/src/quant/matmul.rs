//! y[M×N] = x[M×K] · Wᵀ: quantize x once, then split the work over rayon's pool.
//!
//! * Few activation rows (decode, short prompts): split over weight rows, so every weight byte
//!   is read from memory once per call however many threads share the work. With one row (or
//!   one task) the tasks write straight into y; with more, each task writes its own part of a
//!   scratch (row-major over its weight rows), copied into y as whole runs at the end.
//! * Many rows (prefill): split over activation rows; every task writes its own rows of y and
//!   walks all of W a few weight rows at a time, reusing each from L1 across its activation
//!   tiles (W itself stays in L3 between tasks).
use super::activations::QuantizedRows;
use super::formats::{ActFormat, QuantType};
use super::{panel, Input, Isa, QuantError};
use rayon::prelude::*;
use std::cell::RefCell;

/// From this many activation rows on, VNNI CPUs repack all of W into lane-interleaved panels
/// first and split the product over activation rows (`by_panels`). Below it they repack one
/// panel at a time inside a split over weight rows (`by_fused_panels`): no W-sized scratch is
/// written and read back, which made 32-64 rows 1.5-3x faster (an LM head of 152k rows most),
/// while from a few hundred rows on the whole-W repack is 5-15% faster (`qbench`, Xeon VNNI,
/// 2 threads).
const PANEL_MIN_ROWS: usize = 256;
/// From this many activation rows on, VNNI CPUs use the panel kernels (`by_fused_panels`):
/// with fewer rows the row tiles, which need no repack, are as fast or faster.
const FUSED_PANEL_MIN_ROWS: usize = 8;
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

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// The one weight panel a `by_fused_panels` task has repacked (per worker thread).
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
    if y.len() != m * n {
        return Err(QuantError::OutputSize {
            got: y.len(),
            want: m * n,
        });
    }
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
    // Fewer rows on AMX CPUs: the VNNI kernels.
    let isa = match isa {
        Isa::AmxBf16 => Isa::Avx512Vnni,
        other => other,
    };
    let x = match x {
        Input::Rows(x) => x,
        Input::Glu { gate, up, act } => {
            scratch.glu.resize(m * k, 0.0);
            crate::activation::glu(gate, up, act, &mut scratch.glu);
            &scratch.glu
        }
    };
    let format = activation_format(isa, ty, m);
    scratch.act.quantize(format, x, m, k);
    let panels = matches!(format, ActFormat::Panel { .. });
    if panels && m < PANEL_MIN_ROWS {
        #[cfg(target_arch = "x86_64")]
        by_fused_panels(
            ty,
            w,
            n,
            k,
            row_bytes,
            &scratch.act,
            y,
            &mut scratch.yt,
            threads,
        );
    } else if panels {
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
    } else if m >= ROW_SPLIT_MIN {
        by_activation_rows(isa, ty, w, n, row_bytes, &scratch.act, y, threads);
    } else {
        by_weight_rows(
            isa,
            ty,
            w,
            n,
            row_bytes,
            &scratch.act,
            y,
            &mut scratch.yt,
            threads,
        );
    }
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
    Ok(())
}

/// Whether `run` (and `reference_for`, which mirrors it) multiplies `m` rows on AMX tiles.
pub(super) fn takes_amx(isa: Isa, m: usize) -> bool {
    isa == Isa::AmxBf16 && m >= AMX_MIN_ROWS
}

/// How `run` quantizes the activations for `isa`, `ty` and `m` rows: the weight type's own
/// format, except from `FUSED_PANEL_MIN_ROWS` rows on VNNI CPUs (repacked panels, `x86::panel`).
pub fn activation_format(isa: Isa, ty: QuantType, m: usize) -> ActFormat {
    if matches!(isa, Isa::Avx512Vnni | Isa::AmxBf16) && m >= FUSED_PANEL_MIN_ROWS {
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

#[allow(clippy::too_many_arguments)]
fn by_weight_rows(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    n: usize,
    row_bytes: usize,
    act: &QuantizedRows,
    y: &mut [f32],
    yt: &mut Vec<f32>,
    threads: usize,
) {
    let m = act.m;
    let x = act.rows(0, m);
    let chunk = rows_per_task(n, row_bytes * m.div_ceil(4), threads, 4);
    let task = |t: usize, out: &mut [f32], stride: usize| {
        let rows = out.len() / m;
        let wt = &w[t * chunk * row_bytes..(t * chunk + rows) * row_bytes];
        panel(isa, ty, wt, row_bytes, &x, out, stride);
    };
    over_weight_row_runs(y, yt, n, m, chunk, task);
}

/// Run `task(t, out, stride)` for each run t of `chunk` weight rows (the last may be shorter),
/// where activation row r's products with the run's weight rows go to `out[r * stride..]`,
/// and put the results into y (`m` × `n`).
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
    if chunk >= n {
        // One task: it writes y in place, row-major.
        task(0, y, n);
        return;
    }
    if m == 1 {
        // One row: each task's part is already its run of y.
        y.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(t, out)| task(t, out, 1));
        return;
    }
    // Each task fills its own part of the scratch row-major over its weight rows (activation
    // row r's outputs contiguous), so the parts go into y as whole runs, not element by element.
    let yt = task_parts(yt, n * m);
    yt.par_chunks_mut(chunk * m)
        .enumerate()
        .for_each(|(t, out)| task(t, out, out.len() / m));
    gather_parts(yt, y, chunk, m, n);
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

/// A decode batch on VNNI: split over weight rows like `by_weight_rows`, each task repacking
/// one panel of 8 weight rows at a time into a buffer that stays in L1/L2 and running it
/// against all activation rows at once. W is read from memory and decoded once, and the
/// product runs at the panel kernel's rate (the row tiles decode every weight block once per
/// four activation rows and convert every block product to float on its own).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn by_fused_panels(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    row_bytes: usize,
    act: &QuantizedRows,
    y: &mut [f32],
    yt: &mut Vec<f32>,
    threads: usize,
) {
    use super::x86::{panel, panel_gemm, prefetch, repack_panel};
    let m = act.m;
    let x = act.rows(0, m);
    let pb = panel::panel_bytes(k);
    let chunk = rows_per_task(n, row_bytes * m.div_ceil(4), threads, panel::ROWS);
    // Task t's weight rows into `out` (row r of the task at `r * stride`).
    let task = |t: usize, out: &mut [f32], stride: usize| {
        let first = t * chunk;
        let rows = chunk.min(n - first);
        PANEL.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(pb, 0);
            for p in 0..rows.div_ceil(panel::ROWS) {
                let lo = first + p * panel::ROWS;
                let hi = (lo + panel::ROWS).min(first + rows);
                repack_panel(
                    ty,
                    &w[lo * row_bytes..hi * row_bytes],
                    row_bytes,
                    k,
                    &mut buf,
                );
                let next = (hi + panel::ROWS).min(first + rows);
                prefetch(&w[hi * row_bytes..next * row_bytes]);
                let cols = &mut out[p * panel::ROWS..];
                panel_gemm(ty, &buf, hi - lo, k, &x, cols, stride);
            }
        });
    };
    over_weight_row_runs(y, yt, n, m, chunk, task);
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
