//! Subnormal floats flushed to zero in every thread mixdet computes on.
//!
//! An arithmetic instruction with a subnormal operand or result costs Intel cores a microcode
//! assist of a hundred-odd cycles; trained and synthetic weights alike drive some activations
//! into that range, so without flushing the same network runs several times slower depending on
//! the values in its weights and image. XNNPACK, oneDNN and TFLite set the x86 MXCSR bits FTZ
//! (results flushed to zero) and DAZ (inputs treated as zero) in their worker threads; mixdet does
//! the same, for inference and training alike:
//! - [`FlushDenormals`] sets them on the calling thread for the duration of a model's forward
//!   pass (restoring the caller's setting after), so a library user's own float code is not
//!   changed;
//! - [`flush_denormals_in_pools`] sets them, once per process, in the threads that run kernels:
//!   rayon's global pool (mixdet's kernels, gemm), candle's private rayon pool and candle's
//!   spinning pool for element-wise ops. Those settings stay (they are the pools' threads, and
//!   threads created later by a flushing thread inherit them).
//!
//! `MIXDET_DENORMALS=keep` keeps IEEE gradual underflow everywhere. On aarch64 the FPCR's FZ bit
//! is used (no DAZ there); on other architectures nothing changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod arch {
    /// MXCSR bits: flush-to-zero (15) and denormals-are-zero (6).
    const FLUSH: u32 = (1 << 15) | (1 << 6);

    fn read() -> u32 {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR to a valid, writable u32.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
        csr
    }

    fn write(csr: u32) {
        // SAFETY: ldmxcsr loads a value read from MXCSR with only the FTZ/DAZ bits changed,
        // which are valid on every x86-64 CPU with SSE2.
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags)) };
    }

    pub(super) fn get() -> bool {
        read() & FLUSH == FLUSH
    }

    pub(super) fn set(on: bool) {
        let csr = read();
        write(if on { csr | FLUSH } else { csr & !FLUSH });
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// FPCR bit 24: flush-to-zero.
    const FZ: u64 = 1 << 24;

    fn read() -> u64 {
        let fpcr: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags)) };
        fpcr
    }

    pub(super) fn get() -> bool {
        read() & FZ != 0
    }

    pub(super) fn set(on: bool) {
        let fpcr = if on { read() | FZ } else { read() & !FZ };
        // SAFETY: only the FZ bit of a value read from FPCR is changed.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod arch {
    pub(super) fn get() -> bool {
        false
    }

    pub(super) fn set(_on: bool) {}
}

/// Whether this architecture can flush subnormals (x86-64, aarch64).
pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Whether the calling thread flushes subnormal floats to zero.
pub fn flushing() -> bool {
    arch::get()
}

/// Sets or clears flushing on the calling thread; returns the previous setting.
pub fn set_flushing(on: bool) -> bool {
    let before = arch::get();
    if before != on {
        arch::set(on);
    }
    before
}

/// Whether mixdet flushes subnormals (`MIXDET_DENORMALS=keep` turns it off).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| !std::env::var("MIXDET_DENORMALS").is_ok_and(|v| v.eq_ignore_ascii_case("keep")))
}

static POOLS_FLUSHING: AtomicBool = AtomicBool::new(false);

/// Sets flushing in every thread of rayon's global pool, candle's rayon pool and candle's
/// element-wise pool, once per process (later calls return at once). A no-op when disabled.
pub fn flush_denormals_in_pools() {
    if !enabled() || POOLS_FLUSHING.load(Ordering::Acquire) {
        return;
    }
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        rayon::broadcast(|_| set_flushing(true));
        candle_core::utils::with_threadpool(|| rayon::broadcast(|_| set_flushing(true)));
        // The calling thread is one of this pool's workers for the call: keep its setting.
        let caller = flushing();
        candle_core::utils::barrier_pool().execute(|_| {
            set_flushing(true);
        });
        set_flushing(caller);
        POOLS_FLUSHING.store(true, Ordering::Release);
    });
}

/// The threads of every kernel pool, each reporting whether it flushes (for tests and
/// diagnostics): `(rayon's global pool, candle's rayon pool, candle's element-wise pool)`.
pub fn pools_flushing() -> (Vec<bool>, Vec<bool>, Vec<bool>) {
    let global = rayon::broadcast(|_| flushing());
    let candle = candle_core::utils::with_threadpool(|| rayon::broadcast(|_| flushing()));
    let pool = candle_core::utils::barrier_pool();
    let seen: std::sync::Mutex<Vec<(usize, bool)>> = std::sync::Mutex::default();
    pool.execute(|tid| seen.lock().unwrap_or_else(|p| p.into_inner()).push((tid, flushing())));
    let mut elementwise = seen.into_inner().unwrap_or_else(|p| p.into_inner());
    elementwise.sort();
    // The caller takes part as the last worker index: report the pool's own threads only.
    let threads = elementwise.len().saturating_sub(1);
    (global, candle, elementwise.into_iter().filter(|&(tid, _)| tid < threads).map(|(_, f)| f).collect())
}

/// Flushing on the calling thread until dropped (then the previous setting comes back), and in
/// the kernel pools from then on. Every forward pass of mixdet's models holds one.
#[derive(Debug)]
#[must_use = "flushing ends when the guard is dropped"]
pub struct FlushDenormals {
    previous: Option<bool>,
}

impl FlushDenormals {
    /// Starts flushing (a no-op when [`enabled`] is false).
    pub fn new() -> Self {
        if !enabled() {
            return Self { previous: None };
        }
        flush_denormals_in_pools();
        Self { previous: Some(set_flushing(true)) }
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            set_flushing(previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushing_makes_subnormal_results_zero_and_the_guard_restores() {
        if !SUPPORTED {
            return;
        }
        let tiny = std::hint::black_box(1e-30f32);
        let before = set_flushing(false);
        assert!(std::hint::black_box(tiny * 1e-10) > 0.0, "gradual underflow without flushing");
        {
            let _g = FlushDenormals::new();
            assert!(flushing());
            assert_eq!(std::hint::black_box(tiny * 1e-10), 0.0, "flushed to zero");
        }
        assert!(!flushing(), "the guard restores the caller's setting");
        set_flushing(before);
    }
}
