//! Eight f32 lanes behind one trait, so each kernel is written once and instantiated twice: for
//! AVX2+FMA (picked at run time, since builds are not `target-cpu=native`) and for the portable
//! baseline (SSE2 on x86-64, which has no FMA: there `mul_add` would be a slow library call).

use std::sync::OnceLock;

/// Lanes per vector.
pub(crate) const LANES: usize = 8;

/// Rounds `n` up to a whole number of vectors.
pub(crate) fn round_up_lanes(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// The instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust loops the compiler vectorises for the build's baseline target.
    Portable,
    /// 256-bit AVX2 with fused multiply-add.
    Avx2Fma,
}

impl Isa {
    /// The best instruction set this CPU supports, unless `MIXDET_MIXCONV_ISA=portable` asks for
    /// the baseline (to compare the two, or to rule the SIMD path out when debugging).
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let forced_portable = std::env::var("MIXDET_MIXCONV_ISA").is_ok_and(|v| v.eq_ignore_ascii_case("portable"));
            if !forced_portable && avx2_fma_available() {
                Isa::Avx2Fma
            } else {
                Isa::Portable
            }
        })
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma_available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_fma_available() -> bool {
    false
}

/// An 8-lane f32 vector type and its few operations.
///
/// # Safety
/// Every method is `unsafe`: pointers must be valid for [`LANES`] floats, and an implementation
/// tied to a CPU feature may only run where that feature was detected.
pub(crate) trait Simd8 {
    type V: Copy;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `acc + a * b` (fused where the instruction set has it).
    unsafe fn mul_add(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
    unsafe fn sum(v: Self::V) -> f32;
    /// The even-indexed floats of `p[0..16]`.
    unsafe fn load_even(p: *const f32) -> Self::V;
    /// The first `n < LANES` floats of `p` (only those are read), zeros in the other lanes.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V;
    /// Writes the first `n < LANES` lanes of `v` to `p` (only those are written).
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize);
}

/// Arrays of eight floats: the compiler turns the lane loops into the baseline's vectors.
pub(crate) struct Portable;

impl Simd8 for Portable {
    type V = [f32; LANES];

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; LANES]
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees `p` is valid for LANES reads; no alignment is assumed.
        unsafe { p.cast::<[f32; LANES]>().read_unaligned() }
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: the caller guarantees `p` is valid for LANES writes; no alignment is assumed.
        unsafe { p.cast::<[f32; LANES]>().write_unaligned(v) }
    }

    #[inline(always)]
    unsafe fn mul_add(a: Self::V, b: Self::V, acc: Self::V) -> Self::V {
        let mut r = acc;
        for i in 0..LANES {
            r[i] += a[i] * b[i];
        }
        r
    }

    #[inline(always)]
    unsafe fn sum(v: Self::V) -> f32 {
        // Pairwise, as the AVX2 reduction does, so both paths round alike.
        let s4 = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
        (s4[0] + s4[2]) + (s4[1] + s4[3])
    }

    #[inline(always)]
    unsafe fn load_even(p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees `p` is valid for 16 reads.
        let a = unsafe { p.cast::<[f32; 2 * LANES]>().read_unaligned() };
        std::array::from_fn(|i| a[2 * i])
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V {
        let mut v = [0.0; LANES];
        // SAFETY: the caller guarantees `p` is valid for `n < LANES` reads.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), n.min(LANES)) };
        v
    }

    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize) {
        // SAFETY: the caller guarantees `p` is valid for `n < LANES` writes.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p, n.min(LANES)) };
    }
}

/// AVX2 + FMA intrinsics. Only instantiated inside `#[target_feature(enable = "avx2,fma")]`
/// functions that run after [`Isa::detect`] found both features.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2Fma;

#[cfg(target_arch = "x86_64")]
impl Simd8 for Avx2Fma {
    type V = std::arch::x86_64::__m256;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        // SAFETY: AVX is present (checked by the caller's dispatch).
        unsafe { std::arch::x86_64::_mm256_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: `p` valid for 8 reads (caller); loadu needs no alignment.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: `p` valid for 8 writes (caller); storeu needs no alignment.
        unsafe { std::arch::x86_64::_mm256_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn mul_add(a: Self::V, b: Self::V, acc: Self::V) -> Self::V {
        // SAFETY: FMA is present (checked by the caller's dispatch).
        unsafe { std::arch::x86_64::_mm256_fmadd_ps(a, b, acc) }
    }

    #[inline(always)]
    unsafe fn sum(v: Self::V) -> f32 {
        use std::arch::x86_64::*;
        // SAFETY: AVX is present (checked by the caller's dispatch).
        unsafe {
            let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
            _mm_cvtss_f32(s1)
        }
    }

    #[inline(always)]
    unsafe fn load_even(p: *const f32) -> Self::V {
        use std::arch::x86_64::*;
        // SAFETY: `p` valid for 16 reads (caller); AVX2 present (caller's dispatch).
        unsafe {
            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(LANES)));
            // Per 128-bit lane: a0 a2 b0 b2 | a4 a6 b4 b6; then the 64-bit pairs in order.
            let mixed = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(mixed)))
        }
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V {
        // SAFETY: masked lanes are neither read nor fault; the caller guarantees `n` valid reads.
        unsafe { std::arch::x86_64::_mm256_maskload_ps(p, lane_mask(n)) }
    }

    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize) {
        // SAFETY: masked lanes are neither written nor fault; the caller guarantees `n` valid writes.
        unsafe { std::arch::x86_64::_mm256_maskstore_ps(p, lane_mask(n), v) }
    }
}

/// All-ones in the first `n` lanes (`n` clamped to `LANES`): the mask of a partial load or store
/// (a variable-length copy through a stack buffer costs more than the kernel's arithmetic on
/// short rows).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lane_mask(n: usize) -> std::arch::x86_64::__m256i {
    const MASKS: [i32; 2 * LANES] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    // SAFETY: LANES - min(n, LANES) + 8 <= 16 stays inside MASKS; AVX present (caller's dispatch).
    unsafe { std::arch::x86_64::_mm256_loadu_si256(MASKS.as_ptr().add(LANES - n.min(LANES)).cast()) }
}
