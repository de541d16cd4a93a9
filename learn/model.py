"""The map-conditioned Transformer posterior (seed 000, Sec. 4): encoders, fusion, heads, loss.

``PosteriorModel.forward(batch, targets=None) -> (output, loss)`` takes the batch dict of
:mod:`learn.data.dataset` (see LEARN_CONTRACT / docs/model.md) and returns the top-K mixture
posterior in crop coordinates; with ``targets`` (``(B, 2)`` crop coordinates) it also
returns the training loss of Eq. 24.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from learn.heads import (
    OFF_PRIOR_LOGP,
    CoarseHead,
    FineHead,
    Mixture,
    likelihood_prior,
    top_k_mixture,
)
from learn.losses import coarse_loss, mixture_nll, physics_energy
from twin.errors import InputError, collect

__all__ = ["ModelConfig", "PosteriorModel", "PosteriorOutput", "RadioEncoder", "SetRadioEncoder",
           "MapViT", "Fusion", "DenseCoarseHead", "time_embedding", "normalized_relative_time"]


@dataclass(frozen=True)
class ModelConfig:
    """Model sizes and switches; defaults are the paper's Table 1.

    The data-dependent sizes (``n_features``, ``n_cells``, ``map_channels``,
    ``likelihood_channels``) are filled from the corpus and the data config by the trainer
    and saved in the checkpoint.
    """

    # data-dependent (set from the corpus)
    n_features: int = 4
    n_cells: int = 1024          # cell vocabulary size (index 0 = padding/unknown)
    n_beams: int = 257           # beam vocabulary (0 = none, else beam_id + 1)
    map_channels: int = 10       # radio + semantic channels of ``maps`` (map_valid is added)
    likelihood_channels: int = 0  # channels of ``lik_maps`` beside them (DataConfig.likelihood: 2, else 0)
    crop_px: int = 256           # Table 1: 256 x 256 map, ~1 km² at ~4 m/px
    # radio encoder (Table 1: d_r=256, L=4, H=8)
    radio_encoder: Literal["transformer", "set_transformer"] = "transformer"
    d_radio: int = 256
    radio_layers: int = 4
    radio_heads: int = 8
    n_inducing: int = 16         # Set Transformer ISAB inducing points
    use_bs_xy: bool = True       # add the event's site position (seed 004 Sec. 6.2) to its token
    # map encoder (Table 1: d_m=384, L=6, H=6, patch 16)
    use_map: bool = True         # ablation "no map" when False
    use_e2_equivariant: bool = False
    d_map: int = 384
    map_layers: int = 6
    map_heads: int = 6
    patch_size: int = 16
    # fusion (Table 1: d_f=256, H=8, K_q=4)
    d_fusion: int = 256
    fusion_heads: int = 8
    n_queries: int = 4
    # heads (Table 1: G=32, top-K=5)
    grid_size: int = 32
    top_k: int = 5               # 1 = the "single Gaussian" ablation
    # "mlp": the paper's coarse head, one MLP on the pooled z_f (Eq. 11); "dense": each coarse
    # cell's logit from its own patch token of the map encoder and z_f (DenseCoarseHead)
    coarse_head: Literal["mlp", "dense"] = "mlp"
    # "likelihood": a Bayesian posterior, coarse logits = learned correction + map matching's
    # log-likelihood pooled per cell (heads.likelihood_prior) at a learned tempering (init 1)
    # and the correction's last layer zero-initialised, so the untrained model answers map
    # matching's cell; "none": the paper's logits. Needs the data's likelihood (lik_loglik).
    coarse_prior: Literal["none", "likelihood"] = "none"
    # "likelihood": each component's mean starts at its cell's best likelihood pixel instead of
    # the cell centre (the fine head learns the offset from there); needs coarse_prior likelihood
    fine_anchor: Literal["centre", "likelihood"] = "centre"
    d_cell: int = 64
    head_hidden: int = 512
    use_cell_embedding: bool = True
    sigma_min_cells: float = 0.02
    dropout: float = 0.0
    # loss (Eq. 24; Table 1: lambda_coarse=0.5, lambda_fine=1.0)
    lambda_coarse: float = 0.5
    lambda_fine: float = 1.0
    lambda_phys: float = 0.1
    phys_sigma: float = 1.0      # sigma_phys in normalized feature units (W_phys = 1/sigma)
    phys_huber_delta: float | None = None
    phys_point: Literal["mean", "map"] = "mean"

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_features", "n_cells", "n_beams", "crop_px", "d_radio", "radio_layers", "radio_heads",
                     "n_inducing", "d_map", "map_layers", "map_heads", "patch_size", "d_fusion", "fusion_heads",
                     "n_queries", "grid_size", "top_k", "d_cell", "head_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}: {value!r} must be an integer >= 1")
        if problems:  # the checks below divide by these
            collect(problems, "model config")
        for name in ("map_channels", "likelihood_channels"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                problems.append(f"{name}: {getattr(self, name)!r} must be an integer >= 0")
        if self.likelihood_channels and not self.use_map:
            problems.append(f"likelihood_channels: {self.likelihood_channels} needs use_map (the likelihood channels "
                            "feed the map encoder)")
        for dim, heads in (("d_radio", "radio_heads"), ("d_map", "map_heads"), ("d_fusion", "fusion_heads")):
            if getattr(self, dim) % getattr(self, heads):
                problems.append(f"{dim}: {getattr(self, dim)} is not a multiple of {heads} {getattr(self, heads)}")
        if self.crop_px % self.patch_size:
            problems.append(f"crop_px: {self.crop_px} is not a multiple of patch_size {self.patch_size} "
                            "(the map encoder's patches tile the crop)")
        if self.top_k > self.grid_size**2:
            problems.append(f"top_k: {self.top_k} exceeds the grid's {self.grid_size**2} cells")
        if self.radio_encoder not in ("transformer", "set_transformer"):
            problems.append(f"radio_encoder: {self.radio_encoder!r} must be 'transformer' or 'set_transformer'")
        if self.coarse_head not in ("mlp", "dense"):
            problems.append(f"coarse_head: {self.coarse_head!r} must be 'mlp' or 'dense'")
        if self.coarse_head == "dense" and (not self.use_map or self.use_e2_equivariant):
            problems.append("coarse_head: 'dense' reads the patch tokens of the standard map encoder "
                            "(use_map true, use_e2_equivariant false)")
        if self.coarse_prior not in ("none", "likelihood"):
            problems.append(f"coarse_prior: {self.coarse_prior!r} must be 'none' or 'likelihood'")
        if self.fine_anchor not in ("centre", "likelihood"):
            problems.append(f"fine_anchor: {self.fine_anchor!r} must be 'centre' or 'likelihood'")
        if self.fine_anchor == "likelihood" and self.coarse_prior != "likelihood":
            problems.append("fine_anchor: 'likelihood' anchors at the likelihood prior's best pixels "
                            "(set coarse_prior: likelihood)")
        if self.phys_point not in ("mean", "map"):
            problems.append(f"phys_point: {self.phys_point!r} must be 'mean' or 'map'")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout: {self.dropout} is outside [0, 1)")
        for name in ("sigma_min_cells", "phys_sigma"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}: {getattr(self, name)} must be > 0")
        for name in ("lambda_coarse", "lambda_fine", "lambda_phys"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}: {getattr(self, name)} must be >= 0")
        if self.phys_huber_delta is not None and not self.phys_huber_delta > 0:
            problems.append(f"phys_huber_delta: {self.phys_huber_delta} must be > 0 (or null)")
        collect(problems, "model config")


@dataclass
class PosteriorOutput:
    """What the model predicts for a batch (crop coordinates)."""

    logits: torch.Tensor          # [B, G*G] coarse cell logits
    mixture: Mixture              # top-K posterior
    point: torch.Tensor           # [B, 2] the point estimate used by the physics loss
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample loss terms
    radio_cls: torch.Tensor | None = None  # [B, d_r] the radio encoder's [CLS] embedding z_r (learn.domain reads it)

    @property
    def xy(self) -> torch.Tensor:
        """The point estimate ``(B, 2)`` the training loop validates: the posterior mean."""
        return self.mixture.mean()


def normalized_relative_time(time_s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``delta_bar_t`` of Eq. 5, ``(B, T)`` in [0, 1].

    The origin is the earliest *real* event rather than the first slot, so that the
    result is both invariant to ``tau -> a tau + b`` (a > 0, Prop. 1) and to the order of
    events (Prop. 2); for time-ordered sequences the two coincide.
    """
    big = torch.finfo(time_s.dtype).max
    t0 = torch.where(mask, time_s, torch.full_like(time_s, big)).amin(1, keepdim=True)
    delta = torch.where(mask, time_s - t0, torch.zeros_like(time_s))
    span = delta.amax(1, keepdim=True)
    return torch.where(span > 0, delta / span.clamp_min(torch.finfo(time_s.dtype).tiny), torch.zeros_like(delta))


def time_embedding(delta_bar: torch.Tensor, dim: int, max_position: float = 1000.0) -> torch.Tensor:
    """Sinusoidal ``PE(delta_bar)`` (Eq. 5) treating ``delta_bar * max_position`` as a position, ``(..., dim)``."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=delta_bar.device) / max(half, 1))
    angle = delta_bar[..., None].float() * max_position * freq  # [..., half]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class _Tokenizer(nn.Module):
    """Eq. 4: ``h_t = W [e_c(c_t) || e_b(b_t) || psi(tau_t) || P f_t]`` (+ the site position)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_radio
        self.cfg = cfg
        self.cell = nn.Embedding(cfg.n_cells, d, padding_idx=0)
        self.beam = nn.Embedding(cfg.n_beams, d // 4, padding_idx=0)
        self.time_dim = d // 4
        self.feat = nn.Linear(2 * cfg.n_features, d)  # values and validity flags
        self.bs = nn.Linear(3, d // 4) if cfg.use_bs_xy else None
        width = d + d // 4 + self.time_dim + d + (d // 4 if cfg.use_bs_xy else 0)
        self.proj = nn.Linear(width, d)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        n_cells, n_beams = self.cfg.n_cells, self.cfg.n_beams
        cell = batch["cell_index"].clamp(0, n_cells - 1)
        beam = batch["beam_index"].clamp(0, n_beams - 1)
        valid = batch["feature_valid"].float()
        feats = torch.cat([batch["features"].float() * valid, valid], dim=-1)  # [B, T, 2F]
        parts = [self.cell(cell), self.beam(beam),
                 time_embedding(normalized_relative_time(batch["time_s"].double(), mask).float(), self.time_dim),
                 self.feat(feats)]
        if self.bs is not None:
            bv = batch["bs_valid"].float()[..., None]
            parts.append(self.bs(torch.cat([(batch["bs_xy"].float() - 0.5) * bv, bv], dim=-1)))
        return self.proj(torch.cat(parts, dim=-1))  # [B, T, d_r]


class RadioEncoder(nn.Module):
    """Transformer encoder over event tokens with a [CLS] token and padding masks; no index
    positional encoding, so ``z_r`` is permutation invariant (Prop. 2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tokens = _Tokenizer(cfg)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_radio))
        nn.init.normal_(self.cls, std=0.02)
        layer = nn.TransformerEncoderLayer(cfg.d_radio, cfg.radio_heads, 4 * cfg.d_radio, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.radio_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_radio)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.tokens(batch)  # [B, T, d]
        b = h.shape[0]
        h = torch.cat([self.cls.expand(b, -1, -1), h], dim=1)  # [B, 1+T, d]
        pad = torch.cat([torch.zeros_like(batch["mask"][:, :1]), ~batch["mask"]], dim=1)
        out = self.encoder(h, src_key_padding_mask=pad)
        return self.norm(out[:, 0])  # [B, d_r]


class _MAB(nn.Module):
    """Multihead attention block of the Set Transformer: ``H = X + MHA(X, Y); out = H + FF(H)``."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.n1, self.n2, self.ny = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_pad: torch.Tensor | None = None) -> torch.Tensor:
        yn = self.ny(y)
        h = x + self.att(self.n1(x), yn, yn, key_padding_mask=y_pad, need_weights=False)[0]
        return h + self.ff(self.n2(h))


class SetRadioEncoder(nn.Module):
    """Set Transformer variant: ISAB blocks then pooling by multihead attention (one seed)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_radio
        self.tokens = _Tokenizer(cfg)
        self.inducing = nn.ParameterList(
            [nn.Parameter(torch.randn(1, cfg.n_inducing, d) * 0.02) for _ in range(cfg.radio_layers)])
        self.to_ind = nn.ModuleList([_MAB(d, cfg.radio_heads, cfg.dropout) for _ in range(cfg.radio_layers)])
        self.from_ind = nn.ModuleList([_MAB(d, cfg.radio_heads, cfg.dropout) for _ in range(cfg.radio_layers)])
        self.seed = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pool = _MAB(d, cfg.radio_heads, cfg.dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.tokens(batch)  # [B, T, d]
        pad = ~batch["mask"]
        b = x.shape[0]
        for ind, mab_in, mab_out in zip(self.inducing, self.to_ind, self.from_ind, strict=True):
            h = mab_in(ind.expand(b, -1, -1), x, pad)  # [B, m, d]
            x = mab_out(x, h)
        return self.norm(self.pool(self.seed.expand(b, -1, -1), x, pad)[:, 0])  # [B, d]


class MapViT(nn.Module):
    """Standard ViT over the early-fused map channels (+ the ``map_valid`` channel, + the likelihood channels).

    Returns the tokens ``S`` ``(B, 1 + N, d_m)``: the [CLS] token then the patch tokens.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.crop_px % cfg.patch_size:
            raise InputError(f"model config: crop_px {cfg.crop_px} is not a multiple of patch_size {cfg.patch_size}")
        n = (cfg.crop_px // cfg.patch_size) ** 2
        self.patch = nn.Conv2d(cfg.map_channels + 1 + cfg.likelihood_channels, cfg.d_map, cfg.patch_size, cfg.patch_size)
        self.pos = nn.Parameter(torch.randn(1, 1 + n, cfg.d_map) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_map))
        layer = nn.TransformerEncoderLayer(cfg.d_map, cfg.map_heads, 4 * cfg.d_map, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.map_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_map)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        x = self.patch(maps).flatten(2).transpose(1, 2)  # [B, N, d_m]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.norm(self.encoder(x))


class Fusion(nn.Module):
    """Multi-query cross-attention fusion (Eqs. 7-9) and a residual MLP."""

    def __init__(self, cfg: ModelConfig, d_tokens: int):
        super().__init__()
        d = cfg.d_fusion
        self.queries = nn.Parameter(torch.randn(1, cfg.n_queries, d) * 0.02)
        self.w_radio = nn.Linear(cfg.d_radio, d)
        self.att = nn.MultiheadAttention(d, cfg.fusion_heads, dropout=cfg.dropout, batch_first=True,
                                         kdim=d_tokens, vdim=d_tokens)
        self.agg = nn.Linear(cfg.n_queries * d, d)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, z_r: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = self.queries + self.w_radio(z_r)[:, None]  # [B, K_q, d_f]  (Eq. 7)
        z, _ = self.att(q, tokens, tokens, need_weights=False)  # [B, K_q, d_f]  (Eq. 8)
        z_f = self.agg(z.flatten(1))  # [B, d_f]  (Eq. 9)
        return z_f + self.mlp(self.norm(z_f))


class DenseCoarseHead(nn.Module):
    """Coarse logits ``(B, G*G)`` cell by cell: ``u_c = MLP([s_p(c) || z_f])`` (``coarse_head: dense``).

    ``s_p`` is the map encoder's token of the patch holding cell ``c``; each patch token gives the
    ``r x r`` cells it covers (``r = G / (S / patch)``, an integer), so the map's location
    information reaches the logits without passing through the pooled ``z_f`` alone.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        side = cfg.crop_px // cfg.patch_size
        if side < 1 or cfg.grid_size % side:
            raise InputError(f"model config: coarse_head 'dense' needs grid_size ({cfg.grid_size}) to be a multiple "
                             f"of the patches per side (crop_px {cfg.crop_px} / patch_size {cfg.patch_size} = {side})")
        self.side, self.r, self.g = side, cfg.grid_size // side, cfg.grid_size
        self.mlp = nn.Sequential(nn.Linear(cfg.d_map + cfg.d_fusion, cfg.head_hidden), nn.GELU(),
                                 nn.Linear(cfg.head_hidden, self.r * self.r))

    def forward(self, tokens: torch.Tensor, z_f: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]  # [B, N, d_m], patch (row north, column east) row-major
        b, n, _ = patches.shape
        u = self.mlp(torch.cat([patches, z_f[:, None].expand(b, n, z_f.shape[-1])], dim=-1))  # [B, N, r*r]
        u = u.view(b, self.side, self.side, self.r, self.r).permute(0, 1, 3, 2, 4)  # [B, pi, ri, pj, rj]
        return u.reshape(b, self.g * self.g)  # cell (pi r + ri) G + (pj r + rj)


#: ``coarse_prior: likelihood``: the log of the tempering (and of the off-prior penalty) is this times
#: its parameter, so that Adam's steps (about ``lr`` in parameter units) move them ~20x faster than a
#: weight: single scalars whose right values are far from map matching's (demo corpus, one epoch:
#: tempering 1 -> 0.022, map matching's untempered posterior is overconfident).
LIK_SCALE_RATE = 20.0


class PosteriorModel(nn.Module):
    """Radio encoder + map encoder + fusion + coarse/fine heads (Fig. 2)."""

    LOSS_PARTS = ("coarse", "fine", "phys")  # the per-sample terms of ``output.parts`` (metrics.csv columns)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.radio = SetRadioEncoder(cfg) if cfg.radio_encoder == "set_transformer" else RadioEncoder(cfg)
        self.map: nn.Module | None  # MapViT or E2MapViT
        if cfg.use_map:
            if cfg.use_e2_equivariant:
                from learn.equivariant import E2MapViT

                self.map = E2MapViT(cfg)
            else:
                self.map = MapViT(cfg)
            self.fusion = Fusion(cfg, cfg.d_map)
        else:
            self.map = None
            self.no_map = nn.Sequential(nn.Linear(cfg.d_radio, cfg.d_fusion), nn.GELU(),
                                        nn.Linear(cfg.d_fusion, cfg.d_fusion))
        self.coarse: nn.Module = (DenseCoarseHead(cfg) if cfg.coarse_head == "dense"
                                  else CoarseHead(cfg.d_fusion, cfg.grid_size, cfg.head_hidden))
        self.fine = FineHead(cfg.d_fusion, cfg.grid_size, cfg.d_cell, cfg.head_hidden,
                             cfg.use_cell_embedding, cfg.sigma_min_cells)
        self.lik_log_scale: nn.Parameter | None = None
        if cfg.coarse_prior == "likelihood":
            # the likelihood's tempering is exp(LIK_SCALE_RATE * lik_log_scale): 0 = map matching's posterior
            self.lik_log_scale = nn.Parameter(torch.zeros(()))
            # and the log prior of the pixels map matching does not search is OFF_PRIOR_LOGP * exp(RATE * this)
            self.lik_log_off = nn.Parameter(torch.zeros(()))
            last = [m for m in self.coarse.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)  # the correction starts at 0: the model starts as map matching
            nn.init.zeros_(last.bias)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fused representation ``z_f`` ``(B, d_f)``."""
        return self._encode(batch)[0]

    def _encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``z_f`` ``(B, d_f)``, the map tokens ``(B, 1 + N, d_m)`` (None without a map) and ``z_r`` ``(B, d_r)``."""
        z_r = self.radio(batch)  # [B, d_r]
        if self.map is None:
            return self.no_map(z_r), None, z_r
        parts = [batch["maps"].float(), batch["map_valid"].float()]  # [B, C, S, S], [B, 1, S, S]
        if self.cfg.likelihood_channels:
            lik = batch.get("lik_maps")
            if lik is None or lik.shape[1] != self.cfg.likelihood_channels:
                raise InputError(f"posterior model: expects {self.cfg.likelihood_channels} likelihood channels "
                                 f"(lik_maps), the batch has {0 if lik is None else lik.shape[1]} (build the data "
                                 "with data.likelihood as the model was trained)")
            parts.append(lik.float())  # [B, L, S, S]
        maps = torch.cat(parts, dim=1)  # [B, C+1+L, S, S]
        tokens = self.map(maps)
        return self.fusion(z_r, tokens), tokens, z_r

    def forward(self, batch: dict[str, torch.Tensor], targets: torch.Tensor | None = None
                ) -> tuple[PosteriorOutput, torch.Tensor | None]:
        """Posterior for ``batch``; the loss of Eq. 24 when ``targets`` ``(B, 2)`` (crop coordinates) is given."""
        cfg = self.cfg
        z_f, tokens, z_r = self._encode(batch)
        logits = self.coarse(tokens, z_f) if isinstance(self.coarse, DenseCoarseHead) else self.coarse(z_f)  # [B, G*G]
        anchors = None
        if self.lik_log_scale is not None:
            prior, anchors = self.likelihood_prior(batch)
            logits = logits.float() + prior
        mixture = top_k_mixture(logits, self.fine, z_f, cfg.top_k,
                                anchors if cfg.fine_anchor == "likelihood" else None)
        point = mixture.mean() if cfg.phys_point == "mean" else mixture.map_component()
        out = PosteriorOutput(logits, mixture, point, radio_cls=z_r)
        if targets is None:
            return out, None
        parts = {"coarse": coarse_loss(logits, targets, cfg.grid_size),
                 "fine": mixture_nll(mixture, targets.float())}
        loss = cfg.lambda_coarse * parts["coarse"].mean() + cfg.lambda_fine * parts["fine"].mean()
        if cfg.lambda_phys > 0:
            if "phys_maps" not in batch:
                raise InputError("posterior model: the physics loss (lambda_phys > 0) reads the batch's phys_maps; "
                                 "build the data with physics_maps=True")
            parts["phys"] = physics_energy(batch, point[:, None], cfg.phys_sigma, cfg.phys_huber_delta)[:, 0]
            loss = loss + cfg.lambda_phys * parts["phys"].mean()
        out.parts = parts
        return out, loss

    def likelihood_prior(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Map matching's log-posterior per coarse cell ``(B, G*G)`` at the learned tempering, and each
        cell's best pixel offset ``(B, G*G, 2)`` (:func:`learn.heads.likelihood_prior`)."""
        if "lik_loglik" not in batch or "lik_allowed" not in batch:
            raise InputError("posterior model: coarse_prior 'likelihood' needs the batch keys lik_loglik and "
                             "lik_allowed (build the data with data.likelihood as the model was trained)")
        assert self.lik_log_scale is not None
        return likelihood_prior(batch["lik_loglik"], batch["lik_allowed"], self.cfg.grid_size,
                                self.likelihood_scale(), OFF_PRIOR_LOGP * torch.exp(LIK_SCALE_RATE * self.lik_log_off))

    def likelihood_scale(self) -> torch.Tensor:
        """The learned tempering of the likelihood prior (1 at initialization: map matching's posterior)."""
        assert self.lik_log_scale is not None
        return torch.exp(LIK_SCALE_RATE * self.lik_log_scale)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
