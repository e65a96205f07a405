//! How MixConv shares a layer's channels out among its kernel sizes.

/// The rule that decides how many channels each kernel-size group gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitRule {
    /// timm / TF `_split_channels`: `C / g` channels each, the remainder to the **first** group.
    #[default]
    Equal,
    /// The paper's exponential partition: group i gets `C / 2^(i+1)`, the last group the rest
    /// (32 channels, 4 groups: 16, 8, 4, 4).
    Exponential,
}

/// Splits `total` channels into `groups` parts by `rule`.
///
/// Every part is at least one channel when `total >= groups` under [`SplitRule::Equal`]; the
/// exponential rule can leave a part empty for small `total`, which callers must reject.
pub fn split_channels(total: usize, groups: usize, rule: SplitRule) -> Vec<usize> {
    if groups == 0 {
        return Vec::new();
    }
    match rule {
        SplitRule::Equal => {
            let mut parts = vec![total / groups; groups];
            parts[0] += total - parts.iter().sum::<usize>();
            parts
        }
        SplitRule::Exponential => {
            let mut parts: Vec<usize> = (0..groups - 1).map(|i| total >> (i + 1)).collect();
            parts.push(total - parts.iter().sum::<usize>());
            parts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_split_gives_remainder_to_first_group() {
        assert_eq!(split_channels(144, 5, SplitRule::Equal), vec![144 / 5 + 4, 28, 28, 28, 28]);
        assert_eq!(split_channels(720, 5, SplitRule::Equal), vec![144; 5]);
        assert_eq!(split_channels(10, 3, SplitRule::Equal), vec![4, 3, 3]);
        assert_eq!(split_channels(7, 1, SplitRule::Equal), vec![7]);
    }

    #[test]
    fn exponential_split_matches_paper_example() {
        assert_eq!(split_channels(32, 4, SplitRule::Exponential), vec![16, 8, 4, 4]);
        assert_eq!(split_channels(240, 2, SplitRule::Exponential), vec![120, 120]);
        assert_eq!(split_channels(100, 3, SplitRule::Exponential), vec![50, 25, 25]);
    }
}
