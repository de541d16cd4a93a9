"""Test-time MAP refinement (seed 000, Sec. 6.2, Algorithm 1).

Minimizes ``E(y) = alpha (-log p_K(y)) + beta L_phys(y)`` (Eq. 25) by projected gradient
steps inside the crop ``[0, 1]^2``, from the MAP component mean (or from every component
mean, keeping the lowest energy). It is applied only where ``max_k pi_hat_k`` is below a
threshold; elsewhere the MAP component is kept. The best iterate of each start is kept,
so the returned energy never exceeds the starting one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from learn.heads import Mixture
from learn.losses import physics_energy
from twin.errors import InputError, collect

__all__ = ["RefineConfig", "RefineResult", "energy", "refine"]


@dataclass(frozen=True)
class RefineConfig:
    """Refinement settings; ``alpha = 0`` is the physics-only case of the paper's module."""

    # alpha = beta = 1: the MAP of posterior x physics likelihood, neither term re-weighted.
    alpha: float = 1.0            # trust in the network posterior
    beta: float = 1.0             # trust in the physics likelihood
    # 50 Adam steps of 0.002 crop units (1.2 m over 600 m) move an estimate by up to 0.1 of the
    # crop (60 m), about one or two coarse cells: a local correction, not a new search.
    steps: int = 50               # S of Algorithm 1
    step_size: float = 0.002      # eta [crop units per unit gradient for "sgd"; per step for "adam"]
    optimizer: Literal["sgd", "adam"] = "adam"   # step length independent of the energy's scale
    # A confident posterior (one component above 0.9) is left alone: refinement costs ~13 forward
    # passes and the physics maps cannot add much where the network is already sure.
    threshold: float = 0.9        # refine where max pi_hat < threshold (1.0: always)
    multi_start: bool = True      # start from every component mean, keep the lowest energy (multimodal)
    phys_sigma: float = 1.0       # in normalized feature units: features have unit std after normalization
    phys_huber_delta: float | None = None   # plain Gaussian energy; set for heavy-tailed measurement errors

    def __post_init__(self) -> None:
        problems = []
        for name in ("alpha", "beta"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}: {getattr(self, name)} must be >= 0")
        if self.steps < 0:
            problems.append(f"steps: {self.steps} must be >= 0")
        if not self.step_size > 0:
            problems.append(f"step_size: {self.step_size} must be > 0")
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer: {self.optimizer!r} must be 'sgd' or 'adam'")
        if not 0 <= self.threshold <= 1:
            problems.append(f"threshold: {self.threshold} is outside [0, 1]")
        if not self.phys_sigma > 0:
            problems.append(f"phys_sigma: {self.phys_sigma} must be > 0")
        if self.phys_huber_delta is not None and not self.phys_huber_delta > 0:
            problems.append(f"phys_huber_delta: {self.phys_huber_delta} must be > 0 (or null)")
        collect(problems, "refine config")

    @property
    def reads_physics_maps(self) -> bool:
        """Whether :func:`refine` reads the batch's physics maps: it takes steps (``steps > 0``)
        on an energy with a physics term (``beta > 0``)."""
        return self.steps > 0 and self.beta > 0


@dataclass
class RefineResult:
    """Refined points and the energies before and after, all per sample."""

    xy: torch.Tensor              # [B, 2] crop coordinates
    energy_before: torch.Tensor   # [B] at the MAP component mean
    energy_after: torch.Tensor    # [B]
    applied: torch.Tensor         # [B] bool, where refinement ran


def energy(mixture: Mixture, batch: dict[str, torch.Tensor], xy: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    """Eq. 25 at points ``xy`` ``(B, P, 2)``; returns ``(B, P)``."""
    e = xy.new_zeros(xy.shape[:2])
    if cfg.alpha:
        e = e - cfg.alpha * mixture.log_prob(xy)
    if cfg.beta and batch.get("phys_maps") is not None and batch["phys_maps"].shape[1] > 0:
        e = e + cfg.beta * physics_energy(batch, xy, cfg.phys_sigma, cfg.phys_huber_delta)
    return e


def _subset(mixture: Mixture, batch: dict[str, torch.Tensor], rows: torch.Tensor
            ) -> tuple[Mixture, dict[str, torch.Tensor]]:
    b = mixture.weights.shape[0]
    sub = Mixture(mixture.weights[rows], mixture.means[rows], mixture.sigmas[rows], mixture.cells[rows])
    return sub, {k: (v[rows] if torch.is_tensor(v) and v.dim() and v.shape[0] == b else v) for k, v in batch.items()}


def refine(mixture: Mixture, batch: dict[str, torch.Tensor], cfg: RefineConfig | None = None) -> RefineResult:
    """Algorithm 1 for a batch; gradients flow to the positions only.

    Only the samples below the confidence threshold are optimized (the others keep their
    MAP component without any cost), and each step's energy is the one its gradient came
    from, so a step costs one energy evaluation and one backward pass.
    """
    cfg = cfg or RefineConfig()
    if cfg.reads_physics_maps and "phys_maps" not in batch:
        raise InputError("refinement: the physics term (beta > 0) reads the batch's phys_maps; build the data with "
                         "physics_maps=True (or refine with beta 0 or steps 0)")
    mixture = mixture.detach()
    start_map = mixture.map_component()  # [B, 2]
    with torch.no_grad():
        e0 = energy(mixture, batch, start_map[:, None], cfg)[:, 0]  # [B]
    xy, after = start_map.clone(), e0.clone()
    applied = torch.zeros_like(e0, dtype=torch.bool)
    rows = torch.nonzero(mixture.weights.max(1).values < cfg.threshold).flatten()
    if cfg.steps <= 0 or len(rows) == 0:
        return RefineResult(xy, e0, after, applied)
    mix, part = _subset(mixture, batch, rows)
    if torch.is_tensor(part.get("phys_valid")):
        part["phys_valid"] = part["phys_valid"].float()  # converted once, not at every step
    starts = mix.means if cfg.multi_start else start_map[rows][:, None]  # [b, P, 2]
    with torch.enable_grad():
        y = starts.detach().clone().float().requires_grad_(True)
        opt = (torch.optim.Adam([y], lr=cfg.step_size) if cfg.optimizer == "adam"
               else torch.optim.SGD([y], lr=cfg.step_size))
        best = y.detach().clone()
        best_e = torch.full(y.shape[:2], float("inf"), device=y.device)
        for k in range(cfg.steps + 1):
            opt.zero_grad(set_to_none=True)
            e = energy(mix, part, y, cfg)  # [b, P] at the current iterate
            with torch.no_grad():
                better = e < best_e
                best = torch.where(better[..., None], y, best)
                best_e = torch.where(better, e.detach(), best_e)
            if k == cfg.steps:
                break
            e.sum().backward()
            opt.step()
            with torch.no_grad():
                y.clamp_(0.0, 1.0)  # projection onto the extent
    with torch.no_grad():
        best_k = best_e.argmin(1)
        r = torch.arange(len(best_k), device=best_k.device)
        pick, pick_e = best[r, best_k], best_e[r, best_k]
        better = pick_e < e0[rows]
        xy[rows] = torch.where(better[:, None], pick, start_map[rows])
        after[rows] = torch.where(better, pick_e, e0[rows])
        applied[rows] = better
    return RefineResult(xy, e0, after, applied)
