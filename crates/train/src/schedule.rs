//! Learning-rate schedule: linear warm-up from `warmup_factor * lr`, then cosine decay to `min_lr`
//! at the last step.

/// A warm-up + cosine schedule over `total_steps` optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: u64,
    /// Fraction of `base_lr` at step 0.
    pub warmup_factor: f64,
    /// Steps in the whole run.
    pub total_steps: u64,
}

impl Schedule {
    /// Learning rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            let t = step as f64 / self.warmup_steps as f64;
            return self.base_lr * (self.warmup_factor + (1.0 - self.warmup_factor) * t);
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).clamp(0.0, 1.0);
        self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = Schedule { base_lr: 0.1, min_lr: 0.001, warmup_steps: 10, warmup_factor: 0.01, total_steps: 110 };
        assert!((s.lr(0) - 0.001).abs() < 1e-12);
        assert!((s.lr(5) - 0.1 * (0.01 + 0.99 * 0.5)).abs() < 1e-12);
        assert!((s.lr(10) - 0.1).abs() < 1e-12);
        assert!((s.lr(60) - (0.001 + 0.099 * 0.5)).abs() < 1e-12);
        assert!((s.lr(110) - 0.001).abs() < 1e-12);
        assert!(s.lr(30) > s.lr(31));
    }
}
