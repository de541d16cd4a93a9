"""The road graph of a scene: streets as split groups, drive routes along the roads.

A scene's ``roads.parquet`` LineStrings are cut at every vertex into straight
segments; segment endpoints that coincide (to a millimetre) become one graph node,
so ways that share an OSM node are joined. Each segment belongs to one *street*:
the ways sharing a value of ``street_key`` (OSM ``name`` by default), or each way on
its own when the key is absent or empty. Streets are the units of the spatial split.

Walks are vectorized over many walkers at once: a walker lives on a directed edge
at an offset from its start; at a node it turns onto a uniformly drawn out-edge
other than the way back (a U-turn only at a dead end), restricted to the edges of
its own split so that no route enters a street of another split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from twin.errors import InputError
from twin.geo import Grid

__all__ = ["RoadNetwork", "assign_group_splits", "hold_out_known"]

_NODE_TOLERANCE_M = 1e-3


def assign_group_splits(lengths_m: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
                        ) -> np.ndarray:
    """Assign whole groups to parts (0 train, 1 val, 2 test) by length, reproducibly.

    Groups are visited in a random order and each goes to the part furthest below its
    target share of the total length (relative to that target), so every part with a
    positive fraction gets a group once there are as many groups as such parts.

    Parameters
    ----------
    lengths_m : (G,) float
        Road length of each group [m].
    fractions : (3,) float
        Target length shares of train, val, test; they sum to 1.

    Returns
    -------
    (G,) uint8 part code per group.
    """
    lengths = np.asarray(lengths_m, np.float64)
    target = np.asarray(fractions, np.float64) * max(lengths.sum(), 1e-9)
    assigned = np.zeros(3)
    out = np.zeros(len(lengths), np.uint8)
    for g in rng.permutation(len(lengths)):
        with np.errstate(divide="ignore", invalid="ignore"):
            deficit = np.where(target > 0, (target - assigned) / target, -np.inf)
        part = int(np.argmax(deficit))
        out[g] = part
        assigned[part] += lengths[g]
    return out


def hold_out_known(labels: np.ndarray, known_test_frac: float, rng: np.random.Generator) -> np.ndarray:
    """Move a random ``known_test_frac`` of the training samples to test: the known-streets part.

    The spatial split holds out whole groups (streets, blocks): its test part lies on
    *unknown* streets only. Seed 004 also scores test samples on streets the model has
    seen; they are drawn here, ``round(known_test_frac * n_train)`` of them without
    replacement, so they share their group with training samples but are no training
    sample themselves. The one implementation for synthetic corpora (``twin sample``,
    ``twin generate``) and imports (:func:`learn.splits.spatial_split`).

    Parameters
    ----------
    labels : (N,) uint8
        Part codes (0 train, 1 val, 2 test); not modified.
    known_test_frac : float
        Share of the training samples moved to test, in [0, 1).
    rng : numpy Generator

    Returns
    -------
    (N,) uint8 labels with the known-street test samples set to 2.
    """
    if not 0 <= known_test_frac < 1:
        raise InputError(f"spatial split: known_test_frac {known_test_frac} is outside [0, 1)")
    out = np.array(labels, np.uint8, copy=True)
    train = np.flatnonzero(out == 0)
    n_known = round(known_test_frac * len(train))
    if n_known:
        out[rng.choice(train, n_known, replace=False)] = 2
    return out


@dataclass
class RoadNetwork:
    """Straight road segments, their graph, streets and street splits.

    Attributes
    ----------
    seg_a_m, seg_b_m : (S, 2) float64
        Segment endpoints in scene metres.
    seg_group : (S,) int64
        Street (group) index of each segment.
    node_a, node_b : (S,) int64
        Graph nodes of the endpoints.
    group_names : list of str
        One name per street (the ``street_key`` value, or ``way <row>``).
    group_split : (G,) uint8
        Part of each street (0 train, 1 val, 2 test), set by :meth:`assign_splits`.
    """

    seg_a_m: np.ndarray
    seg_b_m: np.ndarray
    seg_group: np.ndarray
    node_a: np.ndarray
    node_b: np.ndarray
    n_nodes: int
    group_names: list[str]
    group_split: np.ndarray
    _tables: dict | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_roads(cls, roads, grid: Grid, street_key: str | None = "name") -> RoadNetwork:
        """Build the network from a GeoDataFrame of LineStrings in scene metres, clipped to ``grid``.

        Raises :class:`InputError` when no road segment lies inside the grid.
        """
        import shapely

        x0, y0, x1, y1 = grid.extent_m
        geoms = shapely.clip_by_rect(np.asarray(roads.geometry.values), x0, y0, x1, y1)
        use_key = street_key is not None and street_key in roads.columns
        keys = roads[street_key].tolist() if use_key else [None] * len(roads)
        group_of: dict[str, int] = {}
        names: list[str] = []
        a_list, b_list, g_list = [], [], []
        for row, (geom, key) in enumerate(zip(geoms, keys, strict=True)):
            if geom is None or geom.is_empty:
                continue
            parts = [g for g in shapely.get_parts(geom) if g.geom_type == "LineString"]
            coords = [np.asarray(shapely.get_coordinates(p), np.float64) for p in parts]
            coords = [c for c in coords if len(c) >= 2]
            if not coords:
                continue
            label = str(key) if isinstance(key, str) and key.strip() else f"way {row}"
            if label not in group_of:
                group_of[label] = len(names)
                names.append(label)
            for c in coords:
                a_list.append(c[:-1])
                b_list.append(c[1:])
                g_list.append(np.full(len(c) - 1, group_of[label], np.int64))
        if not a_list:
            raise InputError(f"roads.parquet: no road lies inside the scene grid {grid.extent_m}; "
                             "drive mode and spatial splits need roads")
        a, b, grp = np.concatenate(a_list), np.concatenate(b_list), np.concatenate(g_list)
        keys_ab = np.round(np.concatenate([a, b]) / _NODE_TOLERANCE_M).astype(np.int64)
        _, nodes = np.unique(keys_ab, axis=0, return_inverse=True)
        nodes = nodes.reshape(-1)
        na, nb = nodes[: len(a)], nodes[len(a):]
        keep = na != nb  # segments shorter than the node tolerance
        # Streets that lost every segment keep their name (their index stays stable) but get no samples.
        return cls(a[keep], b[keep], grp[keep], na[keep], nb[keep], int(nodes.max()) + 1, names,
                   np.zeros(len(names), np.uint8))

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def seg_length_m(self) -> np.ndarray:
        """``(S,)`` segment lengths [m]."""
        return np.linalg.norm(self.seg_b_m - self.seg_a_m, axis=1)

    def group_length_m(self) -> np.ndarray:
        """``(G,)`` road length of each street inside the grid [m]."""
        return np.bincount(self.seg_group, weights=self.seg_length_m, minlength=self.n_groups)

    def assign_splits(self, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
        """Assign streets to train/val/test by length (see :func:`assign_group_splits`); returns ``(G,)``."""
        self.group_split = assign_group_splits(self.group_length_m(), fractions, rng)
        self._tables = None
        return self.group_split

    def distance_to_roads_m(self, xy_m: np.ndarray) -> np.ndarray:
        """Distance ``(N,)`` [m] from each point ``(N, 2)`` to the nearest segment (brute force)."""
        xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
        d = self.seg_b_m - self.seg_a_m
        t = np.einsum("nsk,sk->ns", xy[:, None] - self.seg_a_m[None], d) / np.maximum((d * d).sum(1), 1e-12)
        t = np.clip(t, 0, 1)
        near = self.seg_a_m[None] + t[..., None] * d[None]
        return np.linalg.norm(xy[:, None] - near, axis=-1).min(axis=1)

    def nearest_group_raster(self, grid: Grid) -> np.ndarray:
        """``(H, W)`` int64: the street nearest to each cell centre of ``grid``."""
        import shapely

        lines = shapely.linestrings(np.stack([self.seg_a_m, self.seg_b_m], axis=1))
        tree = shapely.STRtree(lines)
        centers = grid.centers_m().reshape(-1, 2)
        pts = shapely.points(centers)
        idx = tree.query_nearest(pts, all_matches=False, return_distance=False)
        out = np.empty(len(centers), np.int64)
        out[idx[0]] = self.seg_group[idx[1]]
        return out.reshape(grid.shape)

    # -- walks -----------------------------------------------------------------------------------

    def _walk_tables(self) -> dict:
        """Directed-edge arrays and per-split adjacency (CSR keyed by ``split * n_nodes + node``)."""
        if self._tables is not None:
            return self._tables
        s = len(self.seg_a_m)
        start = np.empty((2 * s, 2))
        start[0::2], start[1::2] = self.seg_a_m, self.seg_b_m
        end = np.empty((2 * s, 2))
        end[0::2], end[1::2] = self.seg_b_m, self.seg_a_m
        length = np.linalg.norm(end - start, axis=1)
        unit = (end - start) / length[:, None]
        tail = np.empty(2 * s, np.int64)
        tail[0::2], tail[1::2] = self.node_a, self.node_b
        head = np.empty(2 * s, np.int64)
        head[0::2], head[1::2] = self.node_b, self.node_a
        group = np.repeat(self.seg_group, 2)
        split = self.group_split[group].astype(np.int64)
        key = split * self.n_nodes + tail
        order = np.argsort(key, kind="stable")
        indptr = np.zeros(3 * self.n_nodes + 1, np.int64)
        np.cumsum(np.bincount(key, minlength=3 * self.n_nodes), out=indptr[1:])
        self._tables = {"start": start, "unit": unit, "length": length, "head": head, "group": group,
                        "split": split, "indptr": indptr, "indices": order}
        return self._tables

    def random_starts(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` uniform points along the roads: directed edge ``(n,)`` and offset ``(n,)`` [m]."""
        tab = self._walk_tables()
        cdf = np.cumsum(tab["length"])
        edge = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        edge = np.minimum(edge, len(cdf) - 1)
        return edge, rng.random(n) * tab["length"][edge]

    def advance(self, edge: np.ndarray, offset_m: np.ndarray, distance_m: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Move walkers ``distance_m`` along the roads, turning at nodes; returns new edge and offset.

        Walkers never leave the split of the edge they are on.
        """
        tab = self._walk_tables()
        edge = edge.copy()
        offset = offset_m + distance_m
        length, head, indptr, indices, split = (tab["length"], tab["head"], tab["indptr"], tab["indices"],
                                                tab["split"])
        while True:
            idx = np.flatnonzero(offset > length[edge])
            if idx.size == 0:
                return edge, offset
            e = edge[idx]
            offset[idx] -= length[e]
            key = split[e] * self.n_nodes + head[e]
            first, count = indptr[key], indptr[key + 1] - indptr[key]
            back = e ^ 1
            # Draw among the out-edges but the way back: pick from count - 1 slots and swap the
            # way back, if drawn, for the last slot.
            r = np.floor(rng.random(idx.size) * np.maximum(count - 1, 1)).astype(np.int64)
            cand = indices[first + r]
            last = indices[first + np.maximum(count - 1, 0)]
            cand = np.where(cand == back, last, cand)
            edge[idx] = np.where(count > 1, cand, back)

    def position_m(self, edge: np.ndarray, offset_m: np.ndarray) -> np.ndarray:
        """Scene positions ``(..., 2)`` [m] of walkers."""
        tab = self._walk_tables()
        return tab["start"][edge] + tab["unit"][edge] * offset_m[..., None]

    def edge_group(self, edge: np.ndarray) -> np.ndarray:
        """Street index of directed edges."""
        return self._walk_tables()["group"][edge]

    def edge_split(self, edge: np.ndarray) -> np.ndarray:
        """Split part of directed edges (0 train, 1 val, 2 test)."""
        return self._walk_tables()["split"][edge]
