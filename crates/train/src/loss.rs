//! The SSD loss: classification over positives plus hard negatives (the `neg_to_pos`
//! highest-loss background anchors per positive, per image) and smooth-L1 (beta 1, summed) on
//! matched anchors, both divided by max(1, positives in the batch). The classification term is
//! torchvision's softmax cross-entropy, or for the TF Object Detection API family TF's
//! `WeightedSigmoidClassificationLoss`: a sigmoid cross-entropy per class column (the background
//! column included, one-hot targets) summed over the columns, with the anchors chosen by the same
//! mining (TF's `HardExampleMiner` at `max_negatives_per_positive: 3`, without its 0.99-IoU box
//! NMS and its minimum of negatives per image).

use candle_core::{Result, Tensor, D};
use mixdet_detect::Family;

/// The classification term of the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassLoss {
    /// Softmax cross-entropy (torchvision's SSD).
    Softmax,
    /// Sigmoid cross-entropy per class, summed (TF's SSD).
    Sigmoid,
}

impl ClassLoss {
    /// The loss a detector family trains with (its scores are a softmax or sigmoids).
    pub fn for_family(family: Family) -> Self {
        match family {
            Family::Torchvision => Self::Softmax,
            Family::TfOdApi => Self::Sigmoid,
        }
    }
}

/// `max(x, 0) - x z + ln(1 + e^-|x|)`: the sigmoid cross-entropy of logit `x` and target `z`.
fn sigmoid_ce(x: f32, z: f32) -> f32 {
    x.max(0.0) - x * z + (-x.abs()).exp().ln_1p()
}

/// Per-anchor sigmoid cross-entropy of `logits` (`a x k`) against one-hot `labels`, summed over k.
fn sigmoid_ce_rows(logits: &[f32], labels: &[u32], k: usize) -> Vec<f32> {
    logits
        .chunks_exact(k)
        .zip(labels)
        .map(|(row, &l)| row.iter().enumerate().map(|(c, &x)| sigmoid_ce(x, f32::from(c == l as usize))).sum())
        .collect()
}

use crate::matching::Targets;

/// The loss of one batch.
#[derive(Debug, Clone)]
pub struct SsdLoss {
    /// classification + regression, differentiable.
    pub total: Tensor,
    /// Classification part.
    pub classification: f32,
    /// Box-regression part.
    pub regression: f32,
    /// Matched anchors in the batch.
    pub num_positive: usize,
}

/// Per-anchor cross-entropy of `logits` (`a x k`, row-major) against `labels`.
fn cross_entropy_rows(logits: &[f32], labels: &[u32], k: usize) -> Vec<f32> {
    logits
        .chunks_exact(k)
        .zip(labels)
        .map(|(row, &l)| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
            lse - row[l as usize]
        })
        .collect()
}

/// Which anchors of one image enter the classification loss: all positives and the
/// `neg_to_pos * positives` background anchors with the highest cross-entropy.
pub fn select_anchors(ce: &[f32], labels: &[u32], neg_to_pos: usize) -> Vec<bool> {
    let num_pos = labels.iter().filter(|&&l| l > 0).count();
    let mut selected: Vec<bool> = labels.iter().map(|&l| l > 0).collect();
    let mut negatives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let take = (neg_to_pos * num_pos).min(negatives.len());
    if take > 0 {
        // Descending loss, ties by index: torch's sort on CPU is stable.
        negatives.select_nth_unstable_by(take - 1, |&a, &b| ce[b].total_cmp(&ce[a]).then(a.cmp(&b)));
        for &i in &negatives[..take] {
            selected[i] = true;
        }
    }
    selected
}

/// The SSD loss of head outputs `cls_logits` (N, A, K) and `bbox_regression` (N, A, 4).
pub fn ssd_loss(
    cls_logits: &Tensor,
    bbox_regression: &Tensor,
    targets: &[Targets],
    neg_to_pos: usize,
    class_loss: ClassLoss,
) -> Result<SsdLoss> {
    let (n, a, k) = cls_logits.dims3()?;
    if targets.len() != n || targets.iter().any(|t| t.labels.len() != a) {
        candle_core::bail!("targets for {} images do not match head outputs of shape ({n}, {a}, {k})", targets.len());
    }
    let device = cls_logits.device();
    let logits = cls_logits.detach().flatten_all()?.to_vec1::<f32>()?;
    let mut cls_weight = vec![0f32; n * a * k];
    let mut reg_target = vec![0f32; n * a * 4];
    let mut reg_mask = vec![0f32; n * a];
    let mut num_positive = 0usize;
    for (i, t) in targets.iter().enumerate() {
        let rows = &logits[i * a * k..(i + 1) * a * k];
        let ce = match class_loss {
            ClassLoss::Softmax => cross_entropy_rows(rows, &t.labels, k),
            ClassLoss::Sigmoid => sigmoid_ce_rows(rows, &t.labels, k),
        };
        let selected = select_anchors(&ce, &t.labels, neg_to_pos);
        for j in 0..a {
            let label = t.labels[j] as usize;
            if label >= k {
                candle_core::bail!("label {label} out of range for {k} classes");
            }
            if selected[j] {
                cls_weight[(i * a + j) * k + label] = 1.0;
            }
            if label > 0 {
                reg_mask[i * a + j] = 1.0;
                reg_target[(i * a + j) * 4..(i * a + j + 1) * 4].copy_from_slice(&t.regression[j]);
                num_positive += 1;
            }
        }
    }
    let norm = num_positive.max(1) as f64;
    let cls_weight = Tensor::from_vec(cls_weight, (n, a, k), device)?;
    let cls_loss = match class_loss {
        ClassLoss::Softmax => {
            let log_probs = candle_nn::ops::log_softmax(cls_logits, D::Minus1)?;
            ((log_probs * cls_weight)?.sum_all()? * (-1.0 / norm))?
        }
        ClassLoss::Sigmoid => {
            // `cls_weight` is the one-hot target of the selected anchors; every column of a
            // selected anchor enters the loss.
            let selected = cls_weight.sum_keepdim(D::Minus1)?;
            let x = cls_logits;
            let ce = ((x.relu()? - (x * &cls_weight)?)? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
            (ce.broadcast_mul(&selected)?.sum_all()? / norm)?
        }
    };
    let reg_target = Tensor::from_vec(reg_target, (n, a, 4), device)?;
    let reg_mask = Tensor::from_vec(reg_mask, (n, a, 1), device)?;
    let diff = (bbox_regression - reg_target)?.broadcast_mul(&reg_mask)?.abs()?;
    let clipped = diff.clamp(0f32, 1f32)?;
    // smooth_l1 with beta 1: 0.5 d^2 below 1, d - 0.5 above; both branches written as one.
    let smooth = ((clipped.sqr()? * 0.5)? + (diff - clipped)?)?;
    let reg_loss = (smooth.sum_all()? / norm)?;
    let classification = cls_loss.to_scalar::<f32>()?;
    let regression = reg_loss.to_scalar::<f32>()?;
    Ok(SsdLoss { total: (cls_loss + reg_loss)?, classification, regression, num_positive })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mining_takes_three_negatives_per_positive_by_loss() {
        let ce = [0.1, 5.0, 0.3, 0.2, 0.9, 0.8, 0.05];
        let labels = [0, 1, 0, 0, 0, 0, 0];
        let s = select_anchors(&ce, &labels, 3);
        assert_eq!(s, vec![false, true, true, false, true, true, false]);
        assert!(select_anchors(&ce, &[0; 7], 3).iter().all(|&x| !x));
    }

    #[test]
    fn smooth_l1_and_normalisation_by_hand() {
        let dev = candle_core::Device::Cpu;
        // One image, two anchors, two classes; anchor 0 positive (label 1), anchor 1 background.
        let logits = Tensor::new(&[[[0.0f32, 0.0], [2.0, 0.0]]], &dev).unwrap();
        let reg = Tensor::new(&[[[0.5f32, -2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]], &dev).unwrap();
        let t = Targets { labels: vec![1, 0], regression: vec![[0.0; 4], [0.0; 4]], num_positive: 1 };
        let l = ssd_loss(&logits, &reg, &[t], 3, ClassLoss::Softmax).unwrap();
        let ce0 = 2f32.ln();
        let ce1 = (1.0 + (-2f32).exp()).ln();
        assert!((l.classification - (ce0 + ce1)).abs() < 1e-5, "{}", l.classification);
        assert!((l.regression - (0.125 + 1.5)).abs() < 1e-6, "{}", l.regression);
        assert_eq!(l.num_positive, 1);
    }

    #[test]
    fn sigmoid_loss_sums_every_column_of_the_selected_anchors() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // Anchor 0 positive (label 1), anchors 1 and 2 background; with neg_to_pos 1 only the
        // harder negative (anchor 2, a high class-1 logit; anchor 1 is confidently background) is mined.
        let logits = Tensor::new(&[[[0.5f32, -1.0], [3.0, -4.0], [0.0, 2.0]]], &dev)?;
        let reg = Tensor::zeros((1, 3, 4), candle_core::DType::F32, &dev)?;
        let t = Targets { labels: vec![1, 0, 0], regression: vec![[0.0; 4]; 3], num_positive: 1 };
        let l = ssd_loss(&logits, &reg, &[t], 1, ClassLoss::Sigmoid)?;
        let expected = sigmoid_ce(0.5, 0.0) + sigmoid_ce(-1.0, 1.0) + sigmoid_ce(0.0, 1.0) + sigmoid_ce(2.0, 0.0);
        assert!((l.classification - expected).abs() < 1e-5, "{} vs {expected}", l.classification);
        // The closed form against ln(sigmoid) directly.
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        assert!((sigmoid_ce(-1.0, 1.0) + s(-1.0).ln()).abs() < 1e-6);
        assert!((sigmoid_ce(2.0, 0.0) + (1.0 - s(2.0)).ln()).abs() < 1e-6);
        Ok(())
    }
}
