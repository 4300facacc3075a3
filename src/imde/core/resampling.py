"""Resampling weights that depend only on a seed and each image's key, never on batches or processes.

Streaming bootstrap (Poisson bootstrap): instead of drawing ``N`` images with replacement, every image gets an
independent Poisson(1) weight in each replicate. Its weighted sums are then a bootstrap replicate of the
dataset's sums that can be accumulated batch by batch, merged and all-reduced like the sums themselves: the
weight of an image is a pure function of ``(seed, key, replicate)``, so the same image gets the same weight
whatever batch, order or process it arrives in. Two models evaluated on the same images with the same seed get
the same weights, which pairs their replicates.

Permutation null: every replicate pairs each image's activations with the depth of another image of its batch.
The pairing is a random cyclic derangement: the batch's images are sorted by a key-derived random score and
each one takes the depth of the next in that order (the last takes the first's). It depends on which images
share a batch, not on their order inside it.

The random numbers come from a counter-based hash (MurmurHash3's 32-bit finaliser chained over the seed, the
key's 64-bit BLAKE2b digest, a stream tag and the replicate index), evaluated with exact int64 arithmetic, so
they are the same on every platform and device and cost a few integer operations per (replicate, image).

>>> weights = poisson_weights(seed=0, keys=key_hashes(["a", "b", "c"]), num_replicates=4)
>>> weights.shape, weights.dtype
(torch.Size([4, 3]), torch.int64)
>>> torch.equal(weights[:, 1], poisson_weights(0, key_hashes(["b"]), 4)[:, 0])  # per image, batch-free
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_BOOTSTRAP_STREAM = 1
_PERMUTATION_STREAM = 2
_GROUP_STREAM = 3
_POISSON_MAX = 24  # P(Poisson(1) > 24) < 1e-25: far below the 2^-32 resolution of the uniforms


def key_hash(key: str | int) -> int:
    """A stable 62-bit integer for an image key (sample name or running index), the same in every process.

    Strings and integers hash differently (``"3"`` and ``3`` are different keys). Python's ``hash`` is salted
    per process, so BLAKE2b is used instead.

    Example:
        >>> key_hash("nyu/00001") == key_hash("nyu/00001") != key_hash("nyu/00002")
        True
    """
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise ValueError(f"key {key!r}: expected a str (sample name) or an int (running index)")
    text = f"{type(key).__name__}:{key}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 2


def key_hashes(keys: Sequence[str | int], device: torch.device | str = "cpu") -> Tensor:
    """int64 ``[B]`` :func:`key_hash` of every key."""
    return torch.tensor([key_hash(key) for key in keys], dtype=torch.int64, device=device)


def _mul32(x: Tensor, constant: int) -> Tensor:
    """``x * constant mod 2^32`` for ``0 <= x < 2^32`` without int64 overflow (16-bit halves)."""
    low = (x & 0xFFFF) * constant
    high = (((x >> 16) * constant) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finaliser (a bijection of ``[0, 2^32)`` with full avalanche)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def uniforms(seed: int, keys: Tensor, num_replicates: int, stream: int) -> Tensor:
    """float64 ``[R, B]`` uniforms in ``(0, 1)``, a pure function of ``(seed, key, replicate, stream)``.

    Args:
        seed: any non-negative integer.
        keys: int64 ``[B]`` key hashes (:func:`key_hashes`).
        num_replicates: ``R``.
        stream: a tag that makes independent sequences (bootstrap weights vs permutation scores).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    device = keys.device
    state = torch.tensor(0x9E3779B9 ^ stream, dtype=torch.int64, device=device)
    for word in (seed & _MASK32, (seed >> 32) & _MASK32, stream):
        state = _mix32(state ^ word)
    per_key = _mix32(state ^ (keys & _MASK32))
    per_key = _mix32(per_key ^ ((keys >> 32) & _MASK32))
    counter = _mix32(_mul32(torch.arange(1, num_replicates + 1, dtype=torch.int64, device=device), 0x9E3779B9))
    bits = _mix32(_mix32(per_key.view(1, -1) ^ counter.view(-1, 1)) ^ 0x5BD1E995)
    return (bits.to(torch.float64) + 0.5) / 2.0**32


def poisson_weights(seed: int, keys: Tensor, num_replicates: int) -> Tensor:
    """int64 ``[R, B]`` Poisson(1) bootstrap weights of the images ``keys`` (inverse CDF of :func:`uniforms`).

    Example:
        >>> w = poisson_weights(0, torch.arange(20000), 1)
        >>> round(w.double().mean().item(), 1), round(w.double().var().item(), 1)  # Poisson(1): mean = var = 1
        (1.0, 1.0)
    """
    u = uniforms(seed, keys, num_replicates, _BOOTSTRAP_STREAM)
    k = torch.arange(_POISSON_MAX, dtype=torch.float64)
    cdf = torch.exp(-1.0 - torch.lgamma(k + 1)).cumsum(0).to(u.device)
    return (u.unsqueeze(-1) > cdf).sum(-1)


def cyclic_derangements(seed: int, keys: Tensor, num_replicates: int) -> Tensor:
    """int64 ``[P, B]``: for each replicate, the batch image whose depth each image is paired with.

    The images are sorted by a key-derived uniform score; each takes the depth of the next one in that order
    (the last the first's): a uniformly random ``B``-cycle, so no image keeps its own depth. Reordering the
    batch permutes the rows consistently (the same image pairs), so the null does not depend on the order
    inside a batch, only on which images share it.

    Args:
        seed: the seed of the run.
        keys: int64 ``[B]`` key hashes, ``B >= 2``.
        num_replicates: ``P``.

    Example:
        >>> partner = cyclic_derangements(0, torch.arange(5), 3)
        >>> bool((partner != torch.arange(5)).all()), sorted(partner[0].tolist())
        (True, [0, 1, 2, 3, 4])
    """
    if keys.numel() < 2:
        raise ValueError(f"a batch of {keys.numel()} image(s) cannot be permuted: the null needs at least 2 per batch")
    scores = uniforms(seed, keys, num_replicates, _PERMUTATION_STREAM)
    order = scores.argsort(dim=1)
    partner = torch.empty_like(order)
    return partner.scatter_(1, order, order.roll(-1, dims=1))


def permutation_groups(seed: int, keys: Tensor, max_size: int) -> list[Tensor]:
    """Split a batch into groups of at most ``max_size`` images (each of 2 or more when ``B >= 2``) for the null.

    Pairing images only within groups bounds the cost of the pair sums at ``max_size`` times the plain sums,
    whatever the batch size. The images are ordered by a key-derived score and cut into ``ceil(B / max_size)``
    groups of near-equal size, so the groups do not depend on the order inside the batch.

    Returns:
        int64 index tensors into the batch, one per group.

    Example:
        >>> [len(group) for group in permutation_groups(0, torch.arange(9), 8)]
        [5, 4]
    """
    if max_size < 2:
        raise ValueError(f"max_size={max_size}: a permutation group needs at least 2 images")
    order = uniforms(seed, keys, 1, _GROUP_STREAM)[0].argsort()
    return list(torch.tensor_split(order, -(-keys.numel() // max_size)))


def key_checksum(keys: Tensor) -> int:
    """Order-free fingerprint of a set of keys (sum of their low 40 bits), summable across batches and processes."""
    return int((keys & ((1 << 40) - 1)).sum())

