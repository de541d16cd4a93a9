"""Coarse-to-fine mixture posterior heads (seed 000, Sec. 4.4, Eqs. 10-16).

Positions live in *crop coordinates*: ``(0, 0)`` is the crop's south-west corner and
``(1, 1)`` its north-east corner (x east, y north), as in the batch dict of
:mod:`learn.data.dataset`. The coarse ``G x G`` grid tiles the crop; cell ``c = i * G + j``
has row ``i`` (growing north) and column ``j`` (growing east), centre
``((j + 0.5) / G, (i + 0.5) / G)``. Densities are per unit crop area; add
``2 * log(crop_size_m)`` to a negative log-density to get nats per m².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from learn.data.crops import pixel_centre

__all__ = ["Mixture", "CoarseHead", "FineHead", "cell_centers", "cell_of", "top_k_mixture", "likelihood_prior",
           "OFF_PRIOR_LOGP"]

_LOG_2PI = math.log(2.0 * math.pi)

#: Log prior [nats] of a crop pixel map matching does not search (off the road, outside the
#: scene) in :func:`likelihood_prior`: unlikely, not impossible, so a truth there keeps a finite
#: loss; the model learns it from there (``PosteriorModel.lik_log_off``).
OFF_PRIOR_LOGP = -100.0


def cell_centers(grid_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Centres of the ``G x G`` coarse cells in crop coordinates, shape ``(G*G, 2)``."""
    g = grid_size
    idx = torch.arange(g * g, device=device)
    i, j = idx // g, idx % g
    return torch.stack([pixel_centre(j, g), pixel_centre(i, g)], dim=-1).float()  # the crop's pixel-centre rule


def cell_of(xy: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Coarse cell index ``c(y)`` (Eq. 17) of crop-coordinate points ``(..., 2)``; clipped to the grid."""
    j = (xy[..., 0] * grid_size).floor().long().clamp(0, grid_size - 1)
    i = (xy[..., 1] * grid_size).floor().long().clamp(0, grid_size - 1)
    return i * grid_size + j


@dataclass
class Mixture:
    """A diagonal Gaussian mixture per sample (the top-K posterior, Eq. 14).

    Attributes
    ----------
    weights : Tensor ``(B, K)``
        Renormalized weights ``pi_hat_k`` (sum to one).
    means : Tensor ``(B, K, 2)``
        Component means ``m_k = c_{c_k} + mu_{c_k}`` [crop units].
    sigmas : Tensor ``(B, K, 2)``
        Standard deviations ``sigma_{c_k}`` [crop units].
    cells : Tensor ``(B, K)`` long
        The coarse cells ``c_k`` of the components.
    """

    weights: torch.Tensor
    means: torch.Tensor
    sigmas: torch.Tensor
    cells: torch.Tensor

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``log p_K(y)`` for points ``(B, 2)`` or ``(B, P, 2)``; returns ``(B,)`` or ``(B, P)``.

        The exact mixture log-density via LogSumExp (Eq. 19), never the Jensen surrogate.
        """
        squeeze = y.dim() == 2
        if squeeze:
            y = y[:, None]
        diff = (y[:, :, None, :] - self.means[:, None]) / self.sigmas[:, None]  # [B, P, K, 2]
        log_n = (-0.5 * diff.pow(2).sum(-1) - torch.log(self.sigmas).sum(-1)[:, None] - _LOG_2PI)  # [B, P, K]
        out = torch.logsumexp(torch.log(self.weights.clamp_min(1e-30))[:, None] + log_n, dim=-1)  # [B, P]
        return out[:, 0] if squeeze else out

    def mean(self) -> torch.Tensor:
        """Posterior mean ``E[y]`` (Eq. 15), ``(B, 2)``."""
        return (self.weights[..., None] * self.means).sum(1)

    def covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``Cov[y]`` (Eq. 16) split as (within-component, between-component), each ``(B, 2, 2)``."""
        w = self.weights[..., None, None]  # [B, K, 1, 1]
        within = (w * torch.diag_embed(self.sigmas.pow(2))).sum(1)
        d = self.means - self.mean()[:, None]  # [B, K, 2]
        between = (w * d[..., :, None] * d[..., None, :]).sum(1)
        return within, between

    def map_component(self) -> torch.Tensor:
        """Mean of the heaviest component ``m_{k*}`` (Sec. 6.1), ``(B, 2)``."""
        k = self.weights.argmax(1)
        return self.means[torch.arange(len(k), device=k.device), k]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws per sample, ``(B, n, 2)``."""
        b = self.weights.shape[0]
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # [B, n]
        rows = torch.arange(b, device=comp.device)[:, None]
        eps = torch.randn((b, n, 2), generator=generator, device=self.means.device, dtype=self.means.dtype)
        return self.means[rows, comp] + self.sigmas[rows, comp] * eps

    def hdr_level(self, y: torch.Tensor, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Smallest highest-density-region mass containing ``y`` ``(B, 2)``, by Monte Carlo.

        ``y`` lies in the HDR of mass ``a`` iff ``p(y)`` is above the density level
        exceeded by a fraction ``a`` of the posterior mass, i.e. iff the returned
        level (the fraction of draws denser than ``y``) is below ``a``. Returns ``(B,)``.
        """
        with torch.no_grad():
            draws = self.sample(n, generator)  # [B, n, 2]
            dens = self.log_prob(draws)  # [B, n]
            at_y = self.log_prob(y)  # [B]
            return (dens > at_y[:, None]).float().mean(1)

    def tempered(self, temperature: float) -> Mixture:
        """The mixture tempered by ``temperature`` ``T > 0`` (post-hoc calibration, :mod:`learn.temperature`).

        Weights ``pi_k^(1/T)`` renormalized and standard deviations ``T * sigma_k``: ``T > 1``
        widens an over-confident posterior, ``T < 1`` sharpens it, ``T = 1`` is the mixture
        itself. The heaviest component stays the heaviest: the MAP point is unchanged.
        """
        if temperature == 1.0:
            return self
        if not temperature > 0:
            raise ValueError(f"temperature: {temperature} must be > 0")
        weights = torch.softmax(torch.log(self.weights.clamp_min(1e-30)) / temperature, dim=-1)
        return Mixture(weights, self.means, self.sigmas * temperature, self.cells)

    def detach(self) -> Mixture:
        return Mixture(self.weights.detach(), self.means.detach(), self.sigmas.detach(), self.cells)

    def to_metres(self, crop_origin_m: torch.Tensor, crop_size_m: torch.Tensor) -> Mixture:
        """The same mixture in scene metres (``crop_origin_m`` ``(B, 2)``, ``crop_size_m`` ``(B,)``)."""
        s = crop_size_m[:, None, None]
        return Mixture(self.weights, crop_origin_m[:, None] + self.means * s, self.sigmas * s, self.cells)


class CoarseHead(nn.Module):
    """``u = MLP_coarse(z_f)``: logits over the ``G*G`` cells (Eq. 11)."""

    def __init__(self, d_in: int, grid_size: int, hidden: int):
        super().__init__()
        self.grid_size = grid_size
        self.net = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, hidden), nn.GELU(),
                                 nn.Linear(hidden, grid_size * grid_size))

    def forward(self, z_f: torch.Tensor) -> torch.Tensor:
        return self.net(z_f)  # [B, G*G]


class FineHead(nn.Module):
    """``(mu_c, sigma_c) = Head_fine(z_f, e_cell(c))`` (Eq. 12), offsets and sigmas in cell units.

    With ``use_cell_embedding=False`` (the ablation) the head sees ``z_f`` only, so all
    cells share one offset and one sigma.
    """

    def __init__(self, d_in: int, grid_size: int, d_cell: int, hidden: int,
                 use_cell_embedding: bool = True, sigma_min: float = 0.02):
        super().__init__()
        self.grid_size = grid_size
        self.use_cell_embedding = use_cell_embedding
        self.sigma_min = sigma_min
        self.cell_embedding = nn.Embedding(grid_size * grid_size, d_cell) if use_cell_embedding else None
        d = d_in + (d_cell if use_cell_embedding else 0)
        # Built in this order so that the seeded initialisation draws as it always has.
        hidden_layer, last = nn.Linear(d, hidden), nn.Linear(hidden, 4)
        self.net = nn.Sequential(nn.LayerNorm(d), hidden_layer, nn.GELU(), last)
        # Start near "centre of the cell, sigma about half a cell" so early NLLs are tame.
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, z_f: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets and sigmas ``(B, K, 2)`` each, in crop units, for cells ``(B, K)``."""
        k = cells.shape[1]
        h = z_f[:, None].expand(-1, k, -1)  # [B, K, d]
        if self.cell_embedding is not None:
            h = torch.cat([h, self.cell_embedding(cells)], dim=-1)
        out = self.net(h)  # [B, K, 4]
        cell = 1.0 / self.grid_size
        offset = out[..., :2] * cell
        sigma = (F.softplus(out[..., 2:] + 0.5413) * 0.5 + self.sigma_min) * cell  # softplus(0.5413)=1
        return offset, sigma


def likelihood_prior(loglik: torch.Tensor, allowed: torch.Tensor, grid_size: int, scale: torch.Tensor | float = 1.0,
                     off_logp: torch.Tensor | float = OFF_PRIOR_LOGP) -> tuple[torch.Tensor, torch.Tensor]:
    """Map matching's posterior pooled over the coarse cells, and each cell's best pixel.

    ``loglik`` ``(B, S, S)``: the log-likelihood ``-E / 2`` [nats] of every crop pixel (row
    north; batch key ``lik_loglik``), ``allowed`` ``(B, S, S)`` the pixels map matching
    searches (``lik_allowed``; the others get the log prior ``off_logp`` [nats], default
    :data:`OFF_PRIOR_LOGP`), ``scale`` the likelihood's tempering (1 = map matching's posterior). With the pixel
    score ``q = scale * loglik + log prior``, cell ``c`` gets

        ``l_c = LogSumExp_{pixels p of c} q_p - log(r^2)``    (``r = S / G`` pixels per cell side)

    i.e. ``log p(c | m)`` up to a constant: a uniform prior over the searched pixels times
    the likelihood, integrated over the cell. Returns ``l`` ``(B, G*G)`` (cell ``i * G + j``)
    and the offset ``(B, G*G, 2)`` [crop units] of each cell's highest-scoring pixel centre
    from the cell centre (no gradient), so the cell of ``argmax l`` holding map matching's
    answer has it as its anchor.
    """
    b, s_h, s_w = loglik.shape
    g = grid_size
    if s_h != s_w or s_h % g:
        raise ValueError(f"likelihood prior: crop of {s_h} x {s_w} pixels is not a multiple of the {g} x {g} grid")
    r = s_h // g
    q = scale * loglik.float() + torch.where(allowed.bool(), torch.zeros_like(loglik.float()), off_logp)
    q = q.view(b, g, r, g, r).permute(0, 1, 3, 2, 4).reshape(b, g * g, r * r)  # [B, cell, pixel in cell]
    cell_ll = torch.logsumexp(q, dim=-1) - math.log(r * r)
    best = q.detach().argmax(-1)  # [B, G*G]
    offset = torch.stack([(best % r).float() + 0.5, (best // r).float() + 0.5], dim=-1) / s_h - 0.5 / g
    return cell_ll, offset


def top_k_mixture(logits: torch.Tensor, fine: FineHead, z_f: torch.Tensor, k: int,
                  anchors: torch.Tensor | None = None) -> Mixture:
    """The top-K renormalized mixture (Eqs. 13-14) from coarse ``logits`` ``(B, G*G)``.

    ``anchors`` ``(B, G*G, 2)`` [crop units], optional: a per-cell offset from the cell centre
    the fine head's offset starts from (``model.fine_anchor: likelihood``: the cell's best
    likelihood pixel, :func:`likelihood_prior`); default the centre.
    """
    log_pi = F.log_softmax(logits.float(), dim=-1)
    top, cells = log_pi.topk(k, dim=-1)  # [B, K]
    weights = torch.softmax(top, dim=-1)  # pi_c / sum_j pi_c_j
    offset, sigma = fine(z_f, cells)
    centers = cell_centers(fine.grid_size, logits.device)[cells]  # [B, K, 2]
    if anchors is not None:
        centers = centers + torch.gather(anchors.float(), 1, cells[..., None].expand(-1, -1, 2))
    return Mixture(weights, centers + offset.float(), sigma.float(), cells)
