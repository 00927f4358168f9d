"""Cluster ids for Label Studio's uncertainty sampling (`predictions.cluster`, least-solved cluster first).

A frame's cluster is its near-duplicate group where the task names one, else a SimHash of its image embedding:
the signs of its projections on a few fixed random hyperplanes (seeded by the embedding size), so the id depends
on the image encoder only and stays the same across classifier, prompt-set and segmenter versions.
"""

from __future__ import annotations

import zlib

import numpy as np

CLUSTER_BITS = 6  # 64 embedding clusters: look-alike frames of one scene share one, distinct scenes spread
_SEED = 20261127
GROUP_CLUSTER_BASE = 1 << 16  # named groups get ids above every SimHash id (Label Studio stores a 32-bit int)


def _hyperplanes(dim: int, bits: int) -> np.ndarray:
    return np.random.default_rng(_SEED + dim).standard_normal((dim, bits)).astype(np.float32)


def embedding_clusters(embeddings: np.ndarray, bits: int = CLUSTER_BITS) -> np.ndarray:
    """One id in [0, 2**bits) per row of `embeddings`."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    signs = embeddings @ _hyperplanes(embeddings.shape[1], bits) > 0
    return (signs * (1 << np.arange(bits))).sum(axis=1).astype(np.int64)


def group_cluster(group: str) -> int:
    """A stable id for a group named in the task's data (camera, sequence, video...)."""
    return GROUP_CLUSTER_BASE + zlib.crc32(group.encode()) % ((1 << 31) - GROUP_CLUSTER_BASE)
