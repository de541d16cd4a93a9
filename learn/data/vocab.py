"""What the model's embeddings index: the cell vocabulary, and the feature names across corpora."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learn.data.scenes import scene_group
from twin import io
from twin.corpus.store import Corpus
from twin.errors import InputError

__all__ = ["CellVocab", "FEATURE_ALIASES", "align_features"]


class CellVocab:
    """Cell keys ``"<scene name>:<cell id>"``; index 0 is padding / unknown, key ``k`` is ``1 + position``."""

    def __init__(self, keys: Sequence[str] = ()):
        self.keys = list(dict.fromkeys(str(k) for k in keys))
        self._index = {k: i + 1 for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        """Number of indices including the padding index 0."""
        return len(self.keys) + 1

    @staticmethod
    def key(scene_name: str, cell_id: int | np.integer) -> str:
        return f"{scene_name}:{int(cell_id)}"

    def index(self, scene_name: str, cell_ids: np.ndarray) -> np.ndarray:
        """Vocabulary indices of ``cell_ids`` (any shape) of a scene; 0 for unknown or negative ids."""
        ids = np.asarray(cell_ids, np.int64)
        flat = [self._index.get(self.key(scene_name, c), 0) if c >= 0 else 0 for c in ids.reshape(-1)]
        return np.asarray(flat, np.int64).reshape(ids.shape)

    def extended(self, keys: Sequence[str]) -> CellVocab:
        """This vocabulary with new keys appended (existing indices unchanged: fine-tuning)."""
        return CellVocab([*self.keys, *keys])

    def to_list(self) -> list[str]:
        return list(self.keys)

    @classmethod
    def from_corpora(cls, corpora: Sequence[Corpus]) -> CellVocab:
        """Every scene's cells, corpus by corpus, scene by scene, in the scenes' order."""
        keys = []
        for corpus in corpora:
            for k in range(corpus.n_scenes):
                group = scene_group(corpus, k)
                name = str(io.attrs(group)["name"])
                keys += [cls.key(name, c) for c in io.read(group, "cell_id", corpus.url)]
        return cls(keys)


# NB-IoT reports its narrowband reference-signal measurements as NRSRP / NRSRQ / NSINR
# (3GPP TS 36.214 Sec. 5.1.26-28): the same quantities, in the same units, as RSRP / RSRQ /
# SINR of a wideband corpus, so a model trained on one reads the other.
FEATURE_ALIASES = {"nrsrp_dbm": "rsrp_dbm", "nrsrq_db": "rsrq_db", "nsinr_db": "sinr_db"}


def align_features(wanted: Sequence[str], available: Sequence[str], where: str = "corpus") -> np.ndarray:
    """Column of ``available`` holding each feature of ``wanted`` (equal names, else :data:`FEATURE_ALIASES`).

    Raises :class:`InputError` naming ``where`` and the feature when one is missing.
    """
    def canon(name: str) -> str:
        return FEATURE_ALIASES.get(str(name).lower(), str(name).lower())

    exact = {str(n): i for i, n in enumerate(available)}
    by_canon = {canon(n): i for i, n in enumerate(available)}
    take, missing = [], []
    for name in wanted:
        i = exact.get(str(name), by_canon.get(canon(name)))
        if i is None:
            missing.append(str(name))
        else:
            take.append(i)
    if missing:
        raise InputError(f"{where}: the model's features {list(wanted)} are not all in the corpus's {list(available)} "
                         f"(missing {', '.join(missing)})")
    return np.asarray(take, np.int64)
