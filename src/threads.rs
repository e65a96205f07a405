//! Thread-count control: rayon's global pool and candle's CPU kernels read the same variables.

use anyhow::{Context, Result};

/// Uses `n` threads for rayon (our kernels, candle's gemm) and candle's own thread pools. Must run
/// before any parallel work starts.
pub fn set_threads(n: usize) -> Result<()> {
    if n == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    // Read by candle (RAYON_NUM_THREADS for gemm, CANDLE_NUM_THREADS for its other pools).
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting up the thread pool")
}
