//! Process-wide run-time settings: thread counts (rayon's global pool and candle's CPU kernels
//! read the same variables) and the allocator's treatment of large buffers.

use anyhow::{Context, Result};

/// Sets up the thread pools: `n` threads for rayon (our kernels, candle's gemm) and candle's own
/// pools when `n` is given, else rayon's and candle's defaults (all cores). Must run before any
/// parallel work starts.
pub fn set_threads(n: Option<usize>) -> Result<()> {
    let mut pool = rayon::ThreadPoolBuilder::new().stack_size(WORKER_STACK_BYTES);
    if let Some(n) = n {
        if n == 0 {
            anyhow::bail!("--threads must be at least 1");
        }
        // Read by candle (RAYON_NUM_THREADS for gemm, CANDLE_NUM_THREADS for its other pools).
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
        pool = pool.num_threads(n);
    }
    pool.build_global().context("setting up the thread pool")
}

/// Rayon workers get the main thread's stack size: the pool runs the forward pass and the
/// training step (see `mixdet_detect::on_worker`).
const WORKER_STACK_BYTES: usize = 8 << 20;

/// Keeps large freed buffers in the process instead of returning them to the kernel, in one
/// malloc arena.
///
/// candle allocates a fresh output buffer for every op; with glibc's defaults any buffer above
/// 128 KiB (most activations) is a fresh `mmap`, so every forward pass page-faults its whole
/// working set again (docs/speed.md has the effect on mixnet_l).
///
/// Kept buffers are kept per arena, and glibc gives threads their own arenas: training (the
/// loop, rayon's workers, the loader's threads, the evaluation) then held the working set several
/// times over. A 4-step SSDLite-MixNet-S training run with one evaluation, batch 16, 320x320:
/// peak resident 11.7 GB with glibc's arenas, 8.5 GB with two, 4.3 GB with one; training speed
/// the same within the machine's noise (three interleaved rounds each).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists and its arguments are valid parameter numbers and values.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
