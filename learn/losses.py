"""Training losses (seed 000, Sec. 5): coarse cross-entropy, exact mixture NLL, physics term.

The physics term samples the per-cell feature maps of the batch (``phys_maps``, the crop
of the corpus ``cell_maps``) at a predicted position with ``F.grid_sample``. The crop's
pixels follow the corpus grid convention: pixel ``(i, j)`` of an ``S x S`` crop holds the
value at the pixel *centre* ``((j + 0.5) / S, (i + 0.5) / S)`` in crop coordinates, row
``i`` growing north. ``align_corners=False`` with ``padding_mode="border"`` is exactly
that convention (points between the outermost centres and the edge take the edge value,
as :meth:`twin.geo.Grid.sample` does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learn.heads import Mixture, cell_of

__all__ = ["coarse_loss", "mixture_nll", "sample_maps", "physics_residuals", "physics_energy"]


def coarse_loss(logits: torch.Tensor, target_xy: torch.Tensor, grid_size: int) -> torch.Tensor:
    """``L_coarse = -log pi_{c*}`` (Eq. 18) per sample, ``(B,)``; ``logits`` ``(B, G*G)``."""
    return F.cross_entropy(logits.float(), cell_of(target_xy, grid_size), reduction="none")


def mixture_nll(mixture: Mixture, target_xy: torch.Tensor) -> torch.Tensor:
    """``L_fine = -LogSumExp_k(log pi_k + log N(y*; m_k, Sigma_k))`` (Eq. 19) per sample, ``(B,)``.

    In nats per unit crop area; add ``2 * log(crop_size_m)`` for nats per m².
    """
    return -mixture.log_prob(target_xy)


def sample_maps(maps: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup ``r(y)`` (Eq. 20) of ``maps`` ``(B, K, F, S, S)`` at points ``xy`` ``(B, P, 2)``.

    Returns ``(B, P, K, F)``. Differentiable in ``xy`` (piecewise linear) and in ``maps``.
    """
    b, k, f, s_h, s_w = maps.shape
    p = xy.shape[1]
    grid = (2.0 * xy - 1.0).to(maps.dtype).view(b, p, 1, 2)  # x -> width axis, y -> height axis
    out = F.grid_sample(maps.reshape(b, k * f, s_h, s_w), grid, mode="bilinear",
                        padding_mode="border", align_corners=False)  # [B, K*F, P, 1]
    return out.view(b, k, f, p).permute(0, 3, 1, 2)


def physics_residuals(batch: dict[str, torch.Tensor], xy: torch.Tensor, sigma: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted residuals ``W_phys (m - r(y))`` (Eq. 22) of every event and feature at points ``xy``.

    Parameters
    ----------
    batch : dict
        Needs ``features`` ``(B, T, F)``, ``feature_valid`` ``(B, T, F)``, ``mask`` ``(B, T)``,
        ``phys_maps`` ``(B, K, F, S, S)``, ``phys_valid`` (same shape) and ``event_slot`` ``(B, T)``.
    xy : Tensor ``(B, P, 2)``
        Points in crop coordinates.
    sigma : float
        ``sigma_phys`` in normalized feature units (features are z-scored, Sec. 5.4 note).

    Returns
    -------
    residual, valid : Tensors ``(B, P, T, F)``; ``valid`` is False where the event is padding,
    its cell has no map, the feature was not observed, or any of the four map neighbours is NaN.
    """
    maps = batch["phys_maps"]
    b, t, f = batch["features"].shape
    p = xy.shape[1]
    if maps.shape[1] == 0:
        zeros = xy.new_zeros((b, p, t, f))
        return zeros, zeros.bool()
    slot = batch["event_slot"]  # [B, T]
    r = sample_maps(maps.float(), xy.float())  # [B, P, K, F]
    valid_map = sample_maps(batch["phys_valid"].float(), xy.float().detach()) > 0.999  # [B, P, K, F]
    idx = slot.clamp_min(0)[:, None, :, None].expand(b, p, t, f)
    r_ev = torch.gather(r, 2, idx)  # [B, P, T, F]
    ok_ev = torch.gather(valid_map, 2, idx)
    valid = (ok_ev & (slot >= 0)[:, None, :, None] & batch["mask"][:, None, :, None]
             & batch["feature_valid"][:, None].bool())
    residual = (batch["features"].float()[:, None] - r_ev) / sigma
    return torch.where(valid, residual, torch.zeros_like(residual)), valid


def physics_energy(batch: dict[str, torch.Tensor], xy: torch.Tensor, sigma: float = 1.0,
                   huber_delta: float | None = None) -> torch.Tensor:
    """``L_phys(y) = ||W_phys (m - r(y))||²`` (Eq. 23) per sample and point, ``(B, P)``.

    Averaged over the valid (event, feature) terms of each sample so that the weight
    ``lambda_phys`` does not depend on the sequence length; zero where nothing is valid.
    ``huber_delta`` replaces the square by the Huber penalty (``2 * huber`` so that it
    equals the square below ``delta``).
    """
    residual, valid = physics_residuals(batch, xy, sigma)
    if huber_delta is None:
        pen = residual.pow(2)
    else:
        pen = 2.0 * F.huber_loss(residual, torch.zeros_like(residual), reduction="none", delta=huber_delta)
    count = valid.sum((2, 3))
    return (pen * valid).sum((2, 3)) / count.clamp_min(1)
