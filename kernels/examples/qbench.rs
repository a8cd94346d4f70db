//! Best-of-N timing of one quantized product, for quick kernel tuning on a noisy machine:
//! `cargo run -p candor-kernels --release --example qbench -- [m] [reps]`
//! (thread count from RAYON_NUM_THREADS; TY, ISA, N, K, HUGE and COPIES below).
use candor_kernels::quant::{filler_blocks, matmul_with, Isa, QuantType};
use std::time::Instant;

fn weights(ty: QuantType, n: usize, k: usize) -> Vec<u8> {
    filler_blocks(ty, n * k / ty.block_elems(), 0x2545_f491_4f6c_dd1d, 0.01)
}

fn main() {
    // On a worker of the pool, as candor's CPU backend runs a model step: the products start
    // on an awake thread, the caller not put to sleep and woken around each one.
    rayon::scope(|_| run_all())
}

fn run_all() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let m = args.first().copied().unwrap_or(1);
    let reps = args.get(1).copied().unwrap_or(50).max(1);
    let only = std::env::var("TY").ok();
    for ty in QuantType::ALL {
        if only.as_ref().is_some_and(|t| *t != format!("{ty:?}")) {
            continue;
        }
        // N and K override the default FFN-like shape (e.g. N=262144 K=640: gemma's LM head,
        // far larger than the caches, so the product streams from memory).
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        let (k, n) = if ty.block_elems() == 256 {
            (env("K").unwrap_or(4864), env("N").unwrap_or(896))
        } else {
            (env("K").unwrap_or(896), env("N").unwrap_or(4864))
        };
        let w = weights(ty, n, k);
        // HUGE=1: the weights in an anonymous mapping advised for transparent huge pages.
        let mut huge = None;
        if std::env::var("HUGE").is_ok() {
            let mut map = memmap2::MmapMut::map_anon(w.len()).expect("anonymous map");
            #[cfg(target_os = "linux")]
            map.advise(memmap2::Advice::HugePage).expect("madvise");
            map.copy_from_slice(&w);
            huge = Some(map);
        }
        let w: &[u8] = match &huge {
            Some(m) => &m[..],
            None => &w,
        };
        // COPIES=c: c copies of the weights, each run reading the next one, so that a run
        // finds its weights in memory rather than in the caches once c copies outgrow them
        // (a mixture of experts' decode: every expert's product reads cold weights).
        let copies = env("COPIES").unwrap_or(1).max(1);
        let cold: Vec<u8> = match copies {
            1 => Vec::new(),
            c => w.repeat(c),
        };
        let copy = |i: usize| match copies {
            1 => w,
            _ => &cold[(i % copies) * w.len()..(i % copies + 1) * w.len()],
        };
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        let mut y = vec![0f32; m * n];
        let mut line = format!("{ty:?} m{m}:");
        for isa in Isa::all_supported()
            .into_iter()
            .filter(|&i| i != Isa::Scalar)
        {
            if std::env::var("ISA").is_ok_and(|w| w != format!("{isa:?}")) {
                continue;
            }
            let mut times: Vec<f64> = (0..reps)
                .map(|rep| {
                    let w = copy(rep);
                    let t = Instant::now();
                    matmul_with(isa, ty, w, n, k, &x, m, &mut y).expect("valid");
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let (best, median) = (times[0], times[times.len() / 2]);
            line += &format!(
                "  {isa:?} {:.1} GMAC/s {:.1} GB/s (median {:.1} GB/s)",
                (m * n * k) as f64 / best / 1e9,
                w.len() as f64 / best / 1e9,
                w.len() as f64 / median / 1e9
            );
        }
        println!("{line}");
    }
}
