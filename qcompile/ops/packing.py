"""Bit packing: binary values along channels into uint64 words (custom_ops/SPEC.md, "Bit convention").

bit 0 <-> +1, bit 1 <-> -1; a float packs to 0 iff x >= 0 (-0.0 -> 0, NaN -> 1). Channel j of a word
group sits in bit j % 64 of word j // 64; unused high bits of the last word are 0.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64


def words_for(bits: int) -> int:
    """Number of uint64 words that hold `bits` channels."""
    return (bits + WORD_BITS - 1) // WORD_BITS


def negative_bits(x: np.ndarray) -> np.ndarray:
    """1 where the binary value is -1 (x < 0 or NaN), else 0."""
    return (~(np.asarray(x) >= 0)).astype(np.uint8)


def pack_last_axis(bits: np.ndarray) -> np.ndarray:
    """Pack a {0,1} array along its last axis into uint64 words, low index in the low bit."""
    bits = np.asarray(bits, dtype=np.uint64)
    k = bits.shape[-1]
    nwords = words_for(k)
    padded = np.zeros((*bits.shape[:-1], nwords * WORD_BITS), dtype=np.uint64)
    padded[..., :k] = bits
    padded = padded.reshape((*bits.shape[:-1], nwords, WORD_BITS))
    shifts = np.arange(WORD_BITS, dtype=np.uint64)
    return np.bitwise_or.reduce(padded << shifts, axis=-1).astype(np.uint64)


def unpack_last_axis(words: np.ndarray, count: int) -> np.ndarray:
    """Inverse of pack_last_axis: uint64 words -> {0,1} uint8 array with `count` entries."""
    words = np.asarray(words, dtype=np.uint64)
    shifts = np.arange(WORD_BITS, dtype=np.uint64)
    bits = (words[..., None] >> shifts) & np.uint64(1)
    bits = bits.reshape((*words.shape[:-1], words.shape[-1] * WORD_BITS))
    return bits[..., :count].astype(np.uint8)


def pack_activations(x: np.ndarray, group: int = 1) -> np.ndarray:
    """float [N, C, H, W] -> uint64 [N, H, W, G*Wg]; each group starts on a fresh word."""
    n, c, h, w = x.shape
    if c % group:
        raise ValueError(f"expected channels ({c}) divisible by group ({group})")
    cg = c // group
    nhwc = negative_bits(x).transpose(0, 2, 3, 1).reshape(n, h, w, group, cg)
    return pack_last_axis(nhwc).reshape(n, h, w, group * words_for(cg))


def unpack_activations(xp: np.ndarray, channels: int, group: int = 1) -> np.ndarray:
    """uint64 [N, H, W, G*Wg] -> {0,1} uint8 [N, C, H, W]."""
    n, h, w, _ = xp.shape
    cg = channels // group
    words = xp.reshape(n, h, w, group, words_for(cg))
    bits = unpack_last_axis(words, cg).reshape(n, h, w, channels)
    return bits.transpose(0, 3, 1, 2)


def pack_dense(x: np.ndarray) -> np.ndarray:
    """float [N, K] -> uint64 [N, Kw]."""
    return pack_last_axis(negative_bits(x))


def pack_conv_weights(w: np.ndarray) -> np.ndarray:
    """sign of float [M, Cg, KH, KW] -> uint64 [M, KH, KW, Wg]."""
    return pack_last_axis(negative_bits(w).transpose(0, 2, 3, 1))


def pack_dense_weights(w: np.ndarray) -> np.ndarray:
    """sign of float [M, K] -> uint64 [M, Kw]."""
    return pack_last_axis(negative_bits(w))
