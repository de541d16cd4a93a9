"""Reproducible train/val/test splits of a corpus: random, and spatial by whole blocks.

Labels are codes into :data:`twin.corpus.store.SPLIT_NAMES` (0 train, 1 val, 2 test).

* **random** — a seeded permutation: ``test_frac`` of the samples to test, ``val_frac``
  to val, the rest to train (80/20 with the defaults ``test_frac=0.2``, ``val_frac=0``
  of the evaluation harness; importers default to 0.2 / 0.1).
* **spatial** — the plane is cut into square blocks of ``block_m`` (default 200 m, a
  few street segments each, aligned on the scene grid's south-west corner). Whole
  blocks, shuffled by seed, go to test until ``test_frac`` of the samples are held
  out, then to val until ``val_frac``: these are seed 004's *unknown streets*. Of the
  remaining (training) blocks, ``known_test_frac`` of the samples are held out at
  random into test as well: the *known streets* part. A test sample is therefore
  "unknown" exactly when no training sample shares its block
  (:func:`known_street_mask`), which the evaluation reports apart.
* **held-out scenes** (:func:`hold_out_scenes`) — every sample of the chosen scenes (the
  patches of a generated corpus) goes to test, the others keep their labels of another
  scheme: the *unseen area* (cross-area) test, where no training sample lies. Stored as a
  scheme of its own with :func:`twin.corpus.store.add_split_scheme`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twin.corpus.routes import hold_out_known
from twin.errors import InputError

__all__ = ["TRAIN", "VAL", "TEST", "random_split", "spatial_split", "block_ids", "known_street_mask",
           "hold_out_scenes"]

TRAIN, VAL, TEST = 0, 1, 2


def _check_fracs(test_frac: float, val_frac: float) -> None:
    if not (0 <= test_frac < 1 and 0 <= val_frac < 1 and test_frac + val_frac < 1):
        raise InputError(f"split fractions test={test_frac}, val={val_frac}: each in [0, 1) and their sum below 1")


def random_split(n: int, seed: int = 0, test_frac: float = 0.2, val_frac: float = 0.1) -> np.ndarray:
    """Labels ``(n,)`` uint8 of a seeded random split."""
    _check_fracs(test_frac, val_frac)
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(test_frac * n)
    n_val = round(val_frac * n)
    labels = np.full(n, TRAIN, np.uint8)
    labels[order[:n_test]] = TEST
    labels[order[n_test:n_test + n_val]] = VAL
    return labels


def block_ids(xy_m: np.ndarray, block_m: float, origin_m: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Block index ``(N,)`` int64 of each point ``(N, 2)`` [m] on a ``block_m`` square lattice.

    Blocks are numbered ``by * 2**20 + bx`` (unique for extents below ~10^8 km).
    """
    if block_m <= 0:
        raise InputError(f"spatial split: block_m must be positive, got {block_m}")
    xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
    bx = np.floor((xy[:, 0] - origin_m[0]) / block_m).astype(np.int64)
    by = np.floor((xy[:, 1] - origin_m[1]) / block_m).astype(np.int64)
    return by * (1 << 20) + bx


def spatial_split(xy_m: np.ndarray, block_m: float = 200.0, seed: int = 0, test_frac: float = 0.2,
                  val_frac: float = 0.1, known_test_frac: float = 0.1,
                  origin_m: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole blocks (unknown streets) and a random part of the others (known streets).

    Parameters
    ----------
    xy_m : (N, 2) array
        Sample positions in scene metres.
    block_m : float
        Side of a block [m].
    test_frac, val_frac : float
        Share of the samples in held-out test / val blocks (reached greedily, whole blocks).
    known_test_frac : float
        Share of the training blocks' samples moved to test (the known-streets part).

    Returns
    -------
    labels : (N,) uint8
    blocks : (N,) int64
        The block of each sample (stored as the corpus ``group_id``).
    """
    _check_fracs(test_frac, val_frac)
    if not 0 <= known_test_frac < 1:
        raise InputError(f"spatial split: known_test_frac {known_test_frac} is outside [0, 1)")
    blocks = block_ids(xy_m, block_m, origin_m)
    n = len(blocks)
    rng = np.random.default_rng(seed)
    unique, counts = np.unique(blocks, return_counts=True)
    order = rng.permutation(len(unique))
    labels = np.full(n, TRAIN, np.uint8)
    block_label = np.full(len(unique), TRAIN, np.uint8)
    held = 0
    test_target, val_target = test_frac * n, (test_frac + val_frac) * n
    # Keep at least one training block whenever there is more than one block.
    for k in order[:-1] if len(order) > 1 else []:
        if held < test_target:
            block_label[k] = TEST
        elif held < val_target:
            block_label[k] = VAL
        else:
            break
        held += counts[k]
    labels[:] = block_label[np.searchsorted(unique, blocks)]
    return hold_out_known(labels, known_test_frac, rng), blocks


def known_street_mask(blocks: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Whether each sample of ``indices`` lies in a block that holds a training sample."""
    train_blocks = np.unique(blocks[labels == TRAIN])
    return np.isin(blocks[indices], train_blocks)


def hold_out_scenes(labels: np.ndarray, scene_index: np.ndarray, test_scenes: Sequence[int]) -> np.ndarray:
    """Labels ``(N,)`` uint8: ``labels`` with every sample of ``test_scenes`` moved to test.

    Parameters
    ----------
    labels : (N,) uint8
        Labels of the scheme the other scenes keep (e.g. ``spatial``: their unknown- and
        known-street test parts stay); not modified.
    scene_index : (N,) int
        Each sample's scene (a patch of ``twin generate``).
    test_scenes : sequence of int
        Scenes held out whole: no sample of theirs trains or validates.

    Raises :class:`InputError` for a scene that no sample has, or when nothing would train.
    """
    lab = np.array(labels, np.uint8, copy=True)
    scenes = np.asarray(scene_index).reshape(-1)
    if scenes.shape != lab.shape:
        raise InputError(f"held-out scenes: {len(scenes)} scene indices for {len(lab)} labels")
    held = np.asarray(list(test_scenes), np.int64)
    missing = sorted(set(held.tolist()) - set(np.unique(scenes).tolist()))
    if missing:
        raise InputError(f"held-out scenes: no sample lies in scene(s) {', '.join(map(str, missing))}")
    lab[np.isin(scenes, held)] = TEST
    if not (lab == TRAIN).any():
        raise InputError("held-out scenes: every training sample lies in a held-out scene; keep one scene to train on")
    return lab
