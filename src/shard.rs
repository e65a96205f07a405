//! Which share of an input list this process works on, when one job is spread over many
//! processes: from the command line, or from the environment a scheduler sets for array tasks.
//!
//! The assignment is contiguous and balanced: with `total` inputs and `n` shards, shard `i` takes
//! positions `floor(i * total / n) .. floor((i + 1) * total / n)` of the input list, so shard sizes
//! differ by at most one and concatenating the shards in order gives the list back. It depends
//! only on the list (the command line's paths in order, folders listed sorted, or a manifest) and
//! on `n`; changing `n` moves inputs between shards, so a job is resumed with the `n` it started
//! with (parts record it and refuse to mix).

use std::ops::Range;

/// A shard: this process's index among `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Zero-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// Why the shard could not be determined.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// A variable or flag is not a non-negative integer.
    #[error("{name}={value:?}: not a non-negative integer")]
    NotANumber {
        /// The flag or variable.
        name: String,
        /// Its value.
        value: String,
    },
    /// The index is not below the count, or the count is zero.
    #[error(
        "shard {index} of {count} (from {source_name}): the index must be below the count, and the count at least 1"
    )]
    OutOfRange {
        /// The index.
        index: usize,
        /// The count.
        count: usize,
        /// Where they came from.
        source_name: String,
    },
    /// An index without a count (or the reverse).
    #[error("{0}")]
    Incomplete(String),
}

impl Shard {
    /// The positions of a list of `total` inputs that this shard takes.
    pub fn range(&self, total: usize) -> Range<usize> {
        let at = |i: usize| ((i as u128 * total as u128) / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// `00003-of-00016`, as part files are named.
    pub fn tag(&self) -> String {
        format!("{:05}-of-{:05}", self.index, self.count)
    }

    fn checked(index: usize, count: usize, source_name: &str) -> Result<Self, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError::OutOfRange { index, count, source_name: source_name.to_string() });
        }
        Ok(Self { index, count })
    }

    /// The shard of this process, from the flags if given, else from the environment; `None`
    /// when neither names one (the whole list). In order of precedence:
    ///
    /// 1. `--shard I --num-shards N`;
    /// 2. `MIXDET_SHARD` / `MIXDET_NUM_SHARDS`;
    /// 3. Slurm job arrays: `SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN` (arrays may start
    ///    at 1), of `SLURM_ARRAY_TASK_COUNT`;
    /// 4. Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX`, of `--num-shards` or `MIXDET_NUM_SHARDS`
    ///    (Kubernetes does not export the Job's `completions`; the manifest passes it);
    /// 5. torchrun-style launches: `RANK` of `WORLD_SIZE`.
    ///
    /// `env` reads a variable (`|k| std::env::var(k).ok()` in a program; a map in tests).
    pub fn resolve(
        flag_index: Option<usize>,
        flag_count: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ShardError> {
        let var = |name: &str| -> Result<Option<usize>, ShardError> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ShardError::NotANumber { name: name.to_string(), value: v.clone() }),
            }
        };
        if let Some(i) = flag_index {
            let n = match flag_count {
                Some(n) => n,
                None => var("MIXDET_NUM_SHARDS")?
                    .ok_or_else(|| ShardError::Incomplete("--shard needs --num-shards".into()))?,
            };
            return Self::checked(i, n, "--shard/--num-shards").map(Some);
        }
        let count_hint = match flag_count {
            Some(n) => Some(n),
            None => var("MIXDET_NUM_SHARDS")?,
        };
        if let Some(i) = var("MIXDET_SHARD")? {
            let n = count_hint.ok_or_else(|| ShardError::Incomplete("MIXDET_SHARD needs MIXDET_NUM_SHARDS".into()))?;
            return Self::checked(i, n, "MIXDET_SHARD/MIXDET_NUM_SHARDS").map(Some);
        }
        if let Some(id) = var("SLURM_ARRAY_TASK_ID")? {
            let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let n = match var("SLURM_ARRAY_TASK_COUNT")? {
                Some(n) => n,
                None => count_hint.ok_or_else(|| {
                    ShardError::Incomplete("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
                })?,
            };
            let i = id.checked_sub(min).ok_or_else(|| ShardError::OutOfRange {
                index: id,
                count: n,
                source_name: format!("SLURM_ARRAY_TASK_ID below SLURM_ARRAY_TASK_MIN={min}"),
            })?;
            return Self::checked(i, n, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT").map(Some);
        }
        if let Some(i) = var("JOB_COMPLETION_INDEX")? {
            let n = count_hint.ok_or_else(|| {
                ShardError::Incomplete(
                    "JOB_COMPLETION_INDEX is set: pass the Job's completions as --num-shards or MIXDET_NUM_SHARDS"
                        .into(),
                )
            })?;
            return Self::checked(i, n, "JOB_COMPLETION_INDEX").map(Some);
        }
        if let (Some(rank), Some(world)) = (var("RANK")?, var("WORLD_SIZE")?) {
            return Self::checked(rank, world, "RANK/WORLD_SIZE").map(Some);
        }
        match count_hint {
            Some(n) if flag_count.is_some() => {
                Err(ShardError::Incomplete(format!("--num-shards {n} needs --shard (or a scheduler's index variable)")))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn ranges_are_contiguous_balanced_and_cover_the_list() {
        for total in [0usize, 1, 7, 100, 1001] {
            for count in [1usize, 3, 16] {
                let ranges: Vec<Range<usize>> = (0..count).map(|index| Shard { index, count }.range(total)).collect();
                assert_eq!(ranges.first().map(|r| r.start), Some(0));
                assert_eq!(ranges.last().map(|r| r.end), Some(total));
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn flags_then_mixdet_then_slurm_then_kubernetes_then_torchrun() {
        let s = |i, n| Some(Shard { index: i, count: n });
        assert_eq!(Shard::resolve(None, None, env(&[])), Ok(None));
        let all = env(&[
            ("MIXDET_SHARD", "1"),
            ("MIXDET_NUM_SHARDS", "4"),
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
        ]);
        assert_eq!(Shard::resolve(Some(2), Some(5), &all), Ok(s(2, 5)));
        assert_eq!(Shard::resolve(None, None, &all), Ok(s(1, 4)));
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "16")]);
        assert_eq!(Shard::resolve(None, None, slurm), Ok(s(4, 16)));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2"), ("RANK", "0"), ("WORLD_SIZE", "2")]);
        assert_eq!(Shard::resolve(None, Some(3), &k8s), Ok(s(2, 3)));
        assert!(matches!(Shard::resolve(None, None, &k8s), Err(ShardError::Incomplete(_))));
        assert_eq!(Shard::resolve(None, None, env(&[("RANK", "1"), ("WORLD_SIZE", "2")])), Ok(s(1, 2)));
    }

    #[test]
    fn bad_values_are_named() {
        let e = Shard::resolve(Some(3), Some(3), env(&[])).unwrap_err().to_string();
        assert!(e.contains("shard 3 of 3") && e.contains("--shard/--num-shards"), "{e}");
        let e = Shard::resolve(None, None, env(&[("SLURM_ARRAY_TASK_ID", "x")])).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID=\"x\""), "{e}");
        assert!(matches!(Shard::resolve(Some(0), None, env(&[])), Err(ShardError::Incomplete(_))));
        assert!(matches!(Shard::resolve(None, Some(4), env(&[])), Err(ShardError::Incomplete(_))));
    }
}
