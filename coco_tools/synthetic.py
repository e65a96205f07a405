"""Deterministic synthetic tensors shared by the Python fixture scripts and the Rust tests.

Weights are not stored in the fixtures: every tensor is a pure function of its state-dict key and
shape, so the Rust side (`mixdet_backbones::synthetic_weights`) regenerates the same values bit for bit
and the committed fixtures hold only the reference outputs.

Generator: a SplitMix64 stream seeded with FNV-1a-64 of the key; element i uses
z = mix(seed + (i + 1) * 0x9E3779B97F4A7C15), u = (z >> 11) * 2**-53 in [0, 1), v = 2u - 1.
Values (computed in float64, then rounded once to float32):
  *.running_var               0.5 + u
  *.running_mean              0.2 * v
  rank-1 *.weight (norm)      1.0 + 0.25 * v
  *.bias                      0.1 * v
  rank >= 2 *.weight          v * sqrt(6 / fan_in), fan_in = prod(shape[1:])
  inputs ("input.*")          v
  *.num_batches_tracked       int64 zeros
"""

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def fnv1a64(key: str) -> np.uint64:
    h = 0xCBF29CE484222325
    for b in key.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(h)


def uniform01(key: str, n: int) -> np.ndarray:
    """n float64 values in [0, 1) for `key`."""
    with np.errstate(over="ignore"):
        idx = np.arange(1, n + 1, dtype=np.uint64)
        z = fnv1a64(key) + idx * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def synthetic_array(key: str, shape) -> np.ndarray:
    """The synthetic value of the tensor named `key` with `shape` (float32, or int64 counters)."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if shape else 1
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    u = uniform01(key, n)
    v = 2.0 * u - 1.0
    if key.endswith("running_var"):
        x = 0.5 + u
    elif key.endswith("running_mean"):
        x = 0.2 * v
    elif key.endswith("bias"):
        x = 0.1 * v
    elif key.endswith("weight") and len(shape) == 1:
        x = 1.0 + 0.25 * v
    elif key.endswith("weight"):
        fan_in = int(np.prod(shape[1:]))
        x = v * np.sqrt(6.0 / fan_in)
    else:
        x = v
    return x.astype(np.float32).reshape(shape)
