//! Vectorisable activations: libm's `expf` is a scalar call per element and was the largest single
//! cost of a MixNet forward pass (a fifth of all instructions under callgrind). This exp is
//! Cephes' `expf` (range reduction by ln 2, degree-6 polynomial, ~1 ulp) written branch-free so
//! that the compiler vectorises the loops, with an AVX2/FMA copy chosen at run time.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in f32 and a correction (Cephes' C1, C2).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
const ROUND_MAGIC: f32 = 12_582_912.0;

#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e = p * r * r + r + 1.0;
    // `t`'s low mantissa bits hold n (|n| <= 127 keeps the exponent fixed), so 2^n is built with
    // integer ops that vectorise; `n as i32` is a saturating scalar conversion per element.
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    e * f32::from_bits(((n_int + 127) << 23) as u32)
}

#[inline(always)]
fn silu_portable(xs: &mut [f32], bias: f32) {
    for x in xs {
        let v = *x + bias;
        *x = v / (1.0 + exp(-v));
    }
}

#[inline(always)]
fn sigmoid_portable(xs: &mut [f32]) {
    for x in xs {
        *x = 1.0 / (1.0 + exp(-*x));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_avx2(xs: &mut [f32], bias: f32) {
    silu_portable(xs, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_avx2(xs: &mut [f32]) {
    sigmoid_portable(xs)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// `x * sigmoid(x)` in place.
pub fn silu_inplace(xs: &mut [f32]) {
    silu_bias_inplace(xs, 0.0)
}

/// `silu(x + bias)` in place: a bias and the activation in one pass over the data.
pub fn silu_bias_inplace(xs: &mut [f32], bias: f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        unsafe { silu_avx2(xs, bias) };
        return;
    }
    silu_portable(xs, bias)
}

/// `1 / (1 + exp(-x))` in place.
pub fn sigmoid_inplace(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        unsafe { sigmoid_avx2(xs) };
        return;
    }
    sigmoid_portable(xs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_useful_range() {
        let mut worst = 0f32;
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "max relative error {worst:e}");
    }

    #[test]
    fn silu_matches_the_definition() {
        let xs: Vec<f32> = (-200..200).map(|i| i as f32 * 0.1).collect();
        let mut ys = xs.clone();
        silu_inplace(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let expected = x / (1.0 + (-x).exp());
            assert!((y - expected).abs() <= 1e-6 * expected.abs().max(1.0), "{x}: {y} vs {expected}");
        }
        let mut extremes = [-1000.0f32, 1000.0];
        silu_inplace(&mut extremes);
        assert!(extremes[0].abs() < 1e-30 && extremes[1] == 1000.0, "{extremes:?}");
    }
}
