"""The optional p4m E(2)-equivariant map ViT (seed 000, Sec. 4.2, Eq. 6; after GE-ViT).

The group ``G = p4m`` (8 elements) acts on images through array operations:
``T_g(X) = rot90(flip^m(X), r)`` for ``g = 4 m + r`` (flip of the last axis, then ``r``
quarter turns). Its multiplication table is computed numerically from those operations,
so the group law and the image action can never disagree.

Layers (features ``f(x, g)`` on patch positions ``x`` and group elements ``g``):

- *lifting patch embedding*: ``f0(x, g) = <T_g W, patch_x(M)>`` (one kernel seen in
  the 8 poses),
- *lifting self-attention* (Eq. 6): queries from ``f0(x, g)``, keys and values from the
  planar field ``mean_g f0(x, g)``, logits plus a learned bias of ``g^{-1}(x' - x)``,
- *group self-attention*: every ``(x, g)`` attends to every ``(x', g')`` with a learned
  bias of ``(g^{-1}(x' - x), g^{-1} g')``,
- token-wise LayerNorm and MLPs.

No absolute positional embedding is used (it would break the symmetry). Rotating or
reflecting the input by ``h`` then permutes the fibres: ``f'(x, g) = f(h^{-1} x, h^{-1} g)``,
i.e. ``out'[:, g] = T_h(out[:, h^{-1} g])`` spatially (checked in the tests).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from twin.errors import InputError

__all__ = ["GROUP_ORDER", "transform", "group_tables", "E2MapViT", "GroupAttention"]

GROUP_ORDER = 8


def transform(x: torch.Tensor, g: int) -> torch.Tensor:
    """``T_g`` on the last two (spatial) axes of ``x``."""
    r, m = g % 4, g // 4
    if m:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, r, dims=(-2, -1))


def group_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """``(mul, inv)``: ``T_a T_b = T_{mul[a, b]}`` and ``mul[a, inv[a]] = e``, from the array action."""
    probe = torch.arange(25.0).view(5, 5) ** 1.5  # no symmetry of its own
    images = [transform(probe, g) for g in range(GROUP_ORDER)]
    mul = torch.empty(GROUP_ORDER, GROUP_ORDER, dtype=torch.long)
    for a in range(GROUP_ORDER):
        for b in range(GROUP_ORDER):
            ab = transform(images[b], a)
            mul[a, b] = next(c for c in range(GROUP_ORDER) if torch.equal(ab, images[c]))
    inv = torch.tensor([int((mul[a] == 0).nonzero()[0, 0]) for a in range(GROUP_ORDER)])
    return mul, inv


def _pose_coordinates(side: int) -> torch.Tensor:
    """``C[g, p] = g^{-1} p`` as centred doubled integer coordinates, ``(G, side*side, 2)``.

    ``T_g(X)[p] = X[g^{-1} p]``, so transforming the coordinate arrays yields the action.
    """
    c = torch.arange(side) * 2 - (side - 1)
    ii, jj = torch.meshgrid(c, c, indexing="ij")
    out = [torch.stack([transform(ii, g), transform(jj, g)], -1).reshape(-1, 2) for g in range(GROUP_ORDER)]
    return torch.stack(out)


def _displacement_index(side: int) -> torch.Tensor:
    """Index of ``g^{-1}(x' - x)`` into a ``(2 side - 1)^2`` table, ``(G, N, N)``."""
    pose = _pose_coordinates(side)  # [G, N, 2]
    d = (pose[:, None, :, :] - pose[:, :, None, :]) // 2 + (side - 1)  # [G, N(x), N(x'), 2]
    return d[..., 0] * (2 * side - 1) + d[..., 1]


class GroupAttention(nn.Module):
    """Multi-head attention with a learned additive bias looked up by an index table."""

    index: torch.Tensor  # [Lq, Lk] buffer (register_buffer attributes are untyped)

    def __init__(self, d: int, heads: int, table_size: int, index: torch.Tensor, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.table = nn.Parameter(torch.zeros(heads, table_size))
        self.register_buffer("index", index, persistent=False)  # [Lq, Lk]
        self.dropout = dropout

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, lq, d = x.shape
        lk = y.shape[1]
        h = self.heads
        q = self.q(x).view(b, lq, h, d // h).transpose(1, 2)  # [B, h, Lq, dh]
        k, v = self.kv(y).view(b, lk, 2, h, d // h).permute(2, 0, 3, 1, 4)  # [B, h, Lk, dh] each
        bias = self.table[:, self.index].to(q.dtype)  # [h, Lq, Lk]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, lq, d))


class _Block(nn.Module):
    def __init__(self, d: int, att: GroupAttention, lifting: bool):
        super().__init__()
        self.lifting = lifting
        self.n1, self.n2, self.nk = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.att = att
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # z: [B, G*N, d]
        if self.lifting:
            b, gn, d = z.shape
            planar = z.view(b, GROUP_ORDER, gn // GROUP_ORDER, d).mean(1)  # [B, N, d] a scalar field
            z = z + self.att(self.n1(z), self.nk(planar))
        else:
            zn = self.n1(z)
            z = z + self.att(zn, zn)
        return z + self.mlp(self.n2(z))


class E2MapViT(nn.Module):
    """p4m-equivariant ViT: lifting patch embedding, lifting self-attention, group self-attention.

    ``forward(maps)`` returns tokens ``(B, 1 + G*N, d_m)``: a pooled (invariant) token
    then the fibres ordered ``g``-major. :meth:`features` gives ``(B, G, h, w, d_m)``.
    """

    def __init__(self, cfg):
        super().__init__()
        if cfg.crop_px % cfg.patch_size:
            raise InputError(f"model config: crop_px {cfg.crop_px} is not a multiple of patch_size {cfg.patch_size}")
        side = cfg.crop_px // cfg.patch_size
        self.side = side
        d = cfg.d_map
        self.patch_size = cfg.patch_size
        self.weight = nn.Parameter(torch.empty(d, cfg.map_channels + 1 + cfg.likelihood_channels, cfg.patch_size, cfg.patch_size))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(d))
        mul, inv = group_tables()
        disp = _displacement_index(side)  # [G, N, N]
        n, n_disp = side * side, (2 * side - 1) ** 2
        lift_index = disp.reshape(GROUP_ORDER * n, n)  # query (g, x) -> key x'
        rel_g = mul[inv][:, :, None, None]  # [G, G', 1, 1] = g^{-1} g'
        group_index = (disp[:, :, None, :] * GROUP_ORDER + rel_g.permute(0, 2, 1, 3)).reshape(
            GROUP_ORDER * n, GROUP_ORDER * n)  # query (g, x) -> key (g', x')
        blocks = [_Block(d, GroupAttention(d, cfg.map_heads, n_disp, lift_index, cfg.dropout), lifting=True)]
        for _ in range(max(cfg.map_layers - 1, 0)):
            blocks.append(_Block(d, GroupAttention(d, cfg.map_heads, n_disp * GROUP_ORDER, group_index,
                                                   cfg.dropout), lifting=False))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d)

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """Equivariant features ``(B, G, h, w, d_m)`` of ``maps`` ``(B, C+1, S, S)``."""
        b = maps.shape[0]
        kernels = torch.cat([transform(self.weight, g) for g in range(GROUP_ORDER)])  # [G*d, C, P, P]
        z = F.conv2d(maps, kernels, stride=self.patch_size)  # [B, G*d, h, w]
        d = self.weight.shape[0]
        z = z.view(b, GROUP_ORDER, d, -1).permute(0, 1, 3, 2) + self.bias  # [B, G, N, d]
        z = z.reshape(b, -1, d)
        for block in self.blocks:
            z = block(z)
        return self.norm(z).view(b, GROUP_ORDER, self.side, self.side, d)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        f = self.features(maps)
        b, d = f.shape[0], f.shape[-1]
        tokens = f.reshape(b, -1, d)  # [B, G*N, d]
        return torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)
