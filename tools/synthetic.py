"""Deterministic synthetic weights and inputs, identical in Python and in Rust
(equireg_nn::synthetic). Used for fixtures so that large networks need no weight files in git:
the Rust tests regenerate the same weights bit for bit from (seed, tensor name).

Element i of the tensor `name` is v = 2 * u - 1 with u = top 24 bits of
splitmix64(fnv1a64(f"{seed}:{name}") + i) / 2^24, then scaled by the tensor's role:
  weights of rank >= 2: v * sqrt(3 / fan_in)      (unit-variance activations)
  weights of rank 1 (norm gains): 1 + 0.1 * v
  biases: 0.1 * v
  anything else (inputs): v
All arithmetic in float64, rounded once to float32.
"""
import numpy as np

MASK = (1 << 64) - 1


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, name: str, n: int) -> np.ndarray:
    """float64 values in [-1, 1)."""
    base = np.uint64(fnv1a64(f"{seed}:{name}"))
    with np.errstate(over="ignore"):
        idx = base + np.arange(n, dtype=np.uint64)
    u = (splitmix64(idx) >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return 2.0 * u - 1.0


def tensor(seed: int, name: str, shape) -> np.ndarray:
    n = int(np.prod(shape)) if len(shape) else 1
    v = uniform(seed, name, n)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "weight" and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = v * np.sqrt(3.0 / fan_in)
    elif leaf == "weight":
        v = 1.0 + 0.1 * v
    elif leaf == "bias":
        v = 0.1 * v
    return v.astype(np.float32).reshape(shape)
