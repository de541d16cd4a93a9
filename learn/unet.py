"""The MLP+UNet baseline (seed 004 appendix C; Khachatryan et al., Ad Hoc Networks 167, 2025), in plain PyTorch.

A convolutional U-Net reads the map crop; an MLP embeds the measurements of at most three
base stations; the embedding joins the encoder's features at the bottleneck and the decoder
gives one logit per pixel (sigmoid: a heatmap of the UE position)::

    map      maps (B, C, P, P) + map_valid --[double 3x3 conv, BN, ReLU] x L, 2x2 max-pool between-->
             features of c, 2c, ..., 2^(L-1) c channels (seed: 64 ... 1024) at P, P/2, ..., P/2^(L-1) px
    radio    the M (3) strongest cells of the last report (learn.unet.strongest_reports), per cell
             [features, feature_valid, bs_xy, bs_valid, present] -> concatenated (B, M (2F + 4))
             -> MLP  rf_dim, rf_hidden, rf_dim  (seed: 256, 1024, 256; ReLU)  -> (B, rf_dim)
    bottleneck  the embedding tiled over the (P/2^(L-1))^2 pixels, concatenated with the deepest features
    decoder  2x2 transposed convolution up, concatenated with the encoder's skip at that scale,
             double 3x3 conv; ... back to P px; 1x1 convolution -> (B, P, P) logits

"Due to architectural constraints, BS count is limited to three" (appendix C): the radio
branch has a fixed number of slots, ``max_bs``. The cells of the last measurement instant
(the last report, as the fingerprint baselines and map matching read it) fill them by
decreasing ``rank_feature`` (RSSI where the corpus has it, else RSRP: seed 004's RSSI
ranking), one slot per distinct cell; fewer cells leave slots zero with ``present`` 0.

Training, targets and decoding are the heatmap baseline's (:mod:`learn.heatmap`): the
per-pixel binary cross-entropy against a Gaussian bump on the exact truth
(:func:`learn.heatmap.gaussian_targets`, ``target_sigma_px``), the argmax pixel's centre as
the estimate (:func:`learn.heatmap.heatmap_output`), the same crops and evaluation
(:class:`learn.heatmap.HeatmapMethod`), trained by the one loop :func:`learn.train.fit`
through :func:`learn.heatmap_train.fit_baseline` (``learn fit-baseline mlp-unet``).

Presets (``learn/presets/unet_*.yaml``): ``small`` (64 px, 16 ... 128 channels over 4
levels; trains on a CPU) and ``full`` (seed 004: 224 px, 64 ... 1024 channels over 5 levels,
bottleneck 14 x 14, MLP 256 -> 1024 -> 256). Checkpoint kind ``"mlp-unet"``
(:func:`load_unet_method`, registered on import).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import nn

from learn.data.dataset import DataConfig
from learn.heatmap import (
    HeatmapMethod,
    HeatmapOutput,
    heatmap_output,
    load_heatmap_checkpoint,
    target_prior_logit,
)
from learn.registry import register_checkpoint_kind
from learn.train import TrainConfig
from twin.errors import InputError, collect

__all__ = ["KIND", "UNetConfig", "UNetRunConfig", "MlpUNet", "strongest_reports", "rank_feature_index",
           "load_unet_method"]

KIND = "mlp-unet"  # the checkpoint kind (learn.registry) and the name of `learn fit-baseline mlp-unet`

#: Preferred ranking features, in order (seed 004 ranks and fingerprints by RSSI).
RANK_FEATURES = ("rssi_dbm", "rsrp_dbm", "nrsrp_dbm", "rss_db")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture and target settings of the MLP+UNet.

    ``image_px`` (the crop's pixels, ``data.crop_px``), ``n_features``, ``n_map_channels``
    and ``rank_feature`` come from the data and are saved in the checkpoint.
    """

    image_px: int = 64            # the small preset's crop: 9.4 m pixels over 600 m, trains on a CPU
    base_channels: int = 16       # channels of the first level (seed: 64); doubled per level
    levels: int = 4               # resolutions of the encoder (seed: 5, 64 ... 1024 channels)
    rf_dim: int = 256             # the radio MLP's first and last width (seed: 256)
    rf_hidden: int = 1024         # its middle width (seed: 1024)
    max_bs: int = 3               # radio slots (seed 004: "BS count is limited to three")
    target_sigma_px: float = 1.5  # the heatmap baseline's bump: ~3 px, argmax still sharp
    dropout: float = 0.0          # before the radio MLP's last layer; early stopping on val regularizes
    n_features: int = 4
    n_map_channels: int = 0
    rank_feature: int = 0         # index of the feature ranking the cells (set from the names: RANK_FEATURES)

    def __post_init__(self) -> None:
        problems = []
        for name in ("image_px", "base_channels", "rf_dim", "rf_hidden", "max_bs", "n_features"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)} must be >= 1")
        if self.levels < 2:
            problems.append(f"levels: {self.levels} must be >= 2 (an encoder, a bottleneck and a decoder)")
        elif self.image_px % 2 ** (self.levels - 1):
            problems.append(f"image_px: {self.image_px} is not a multiple of 2^(levels - 1) = "
                            f"{2 ** (self.levels - 1)} (each level halves the crop)")
        if not 0 <= self.rank_feature < max(self.n_features, 1):
            problems.append(f"rank_feature: {self.rank_feature} is not a feature index (< {self.n_features})")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout: {self.dropout} is outside [0, 1)")
        if not self.target_sigma_px > 0:
            problems.append(f"target_sigma_px: {self.target_sigma_px} must be > 0")
        collect(problems, "mlp-unet config")

    @property
    def channels(self) -> list[int]:
        """Channels per level, finest first (seed: 64, 128, 256, 512, 1024)."""
        return [self.base_channels * 2**k for k in range(self.levels)]

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, float) else int(v)) for k, v in asdict(self).items()}

    def with_data(self, feature_names: list[str], n_map_channels: int, image_px: int) -> UNetConfig:
        """This config with a run's data-dependent sizes; the ranking feature chosen by name."""
        return dataclasses.replace(self, n_features=len(feature_names), n_map_channels=int(n_map_channels),
                                   image_px=int(image_px), rank_feature=rank_feature_index(feature_names))


def rank_feature_index(feature_names: list[str]) -> int:
    """Index of the first of :data:`RANK_FEATURES` among ``feature_names`` (NB-IoT names included), else 0."""
    names = [str(n).lower() for n in feature_names]
    for want in RANK_FEATURES:
        if want in names:
            return names.index(want)
    return 0


@dataclass(frozen=True)
class UNetRunConfig:
    """An MLP+UNet run: the architecture, the training (:class:`learn.train.TrainConfig`) and the crops."""

    model: UNetConfig = field(default_factory=UNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_px=64, max_cells=0))

    def __post_init__(self) -> None:
        step = 2 ** (self.model.levels - 1)
        if self.data.crop_px % step:
            raise InputError(f"data.crop_px: {self.data.crop_px} is not a multiple of 2^(model.levels - 1) = {step} "
                             "(each level of the U-Net halves the crop)")


def strongest_reports(batch: dict[str, torch.Tensor], max_bs: int, rank_feature: int) -> torch.Tensor:
    """The radio branch's input ``(B, max_bs, 2F + 4)``: the strongest distinct cells of the last report.

    Candidates are the real events at the sequence's last time (``mask`` and ``time_s ==
    max``); they are ranked by the normalized ``features[..., rank_feature]`` (events without
    it last), and an event whose cell (``cell_index`` > 0) already holds a stronger slot is
    skipped. Per slot: ``[features * valid (F), feature_valid (F), bs_xy * bs_valid (2),
    bs_valid, present]``; empty slots are zero.
    """
    mask = batch["mask"]
    b, t = mask.shape
    feats = batch["features"].float()
    valid = batch["feature_valid"].to(feats.dtype)
    time_s = batch["time_s"].float()
    t_last = torch.where(mask, time_s, torch.full_like(time_s, -torch.inf)).amax(dim=1, keepdim=True)
    last = mask & (time_s == t_last)                                            # [B, T]
    strength = torch.where(batch["feature_valid"][..., rank_feature], feats[..., rank_feature],
                           torch.full_like(time_s, -1e6))                       # unranked events after ranked ones
    score = torch.where(last, strength, torch.full_like(time_s, -torch.inf))   # [B, T]
    order = torch.sort(score, dim=1, descending=True, stable=True).indices     # [B, T]
    s_score = score.gather(1, order)
    s_cell = batch["cell_index"].gather(1, order)
    same = (s_cell[:, :, None] == s_cell[:, None, :]) & (s_cell[:, :, None] > 0)          # [B, T, T]
    earlier = torch.ones(t, t, dtype=torch.bool, device=mask.device).tril(-1)            # j < i
    dup = (same & earlier & torch.isfinite(s_score)[:, None, :]).any(dim=2)               # [B, T]
    s_score = torch.where(dup, torch.full_like(s_score, -torch.inf), s_score)
    pick = torch.sort(s_score, dim=1, descending=True, stable=True).indices[:, :max_bs]   # [B, M'] of sorted
    present = torch.isfinite(s_score.gather(1, pick))                                     # [B, M']
    events = order.gather(1, pick)                                                        # [B, M'] event slots
    bs_ok = batch["bs_valid"].to(feats.dtype)[..., None]
    per_event = torch.cat([feats * valid, valid, batch["bs_xy"].float() * bs_ok, bs_ok], dim=-1)  # [B, T, 2F+3]
    chosen = per_event.gather(1, events[..., None].expand(-1, -1, per_event.shape[-1]))
    slots = torch.cat([chosen, torch.ones_like(chosen[..., :1])], dim=-1) * present[..., None]
    if slots.shape[1] < max_bs:  # fewer events than slots
        slots = torch.cat([slots, slots.new_zeros(b, max_bs - slots.shape[1], slots.shape[-1])], dim=1)
    return slots


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3 x 3 convolutions, each with batch norm and ReLU (the U-Net block)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class MlpUNet(nn.Module):
    """The MLP+UNet; ``forward(batch, targets=None) -> (HeatmapOutput, loss or None)`` (:func:`learn.train.fit`)."""

    LOSS_PARTS = ("bce",)  # the per-sample terms of ``output.parts`` (metrics.csv columns)

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        ch = c.channels
        self.down = nn.ModuleList([_double_conv(c.n_map_channels + 1, ch[0])]
                                  + [_double_conv(ch[k - 1], ch[k]) for k in range(1, c.levels)])
        self.pool = nn.MaxPool2d(2)
        rf_in = c.max_bs * (2 * c.n_features + 4)
        self.rf_mlp = nn.Sequential(nn.Linear(rf_in, c.rf_dim), nn.ReLU(), nn.Linear(c.rf_dim, c.rf_hidden), nn.ReLU(),
                                    nn.Dropout(c.dropout), nn.Linear(c.rf_hidden, c.rf_dim), nn.ReLU())
        # Decoder, deepest first: up from level k to k - 1, then a double conv over [up, skip].
        deep = [ch[-1] + c.rf_dim, *ch[1:-1][::-1]]  # channels entering each up-convolution
        self.up = nn.ModuleList([nn.ConvTranspose2d(d_in, ch[k - 1], 2, stride=2)
                                 for d_in, k in zip(deep, range(c.levels - 1, 0, -1), strict=True)])
        self.fuse = nn.ModuleList([_double_conv(2 * ch[k - 1], ch[k - 1]) for k in range(c.levels - 1, 0, -1)])
        self.head = nn.Conv2d(ch[0], 1, 1)
        nn.init.constant_(cast(torch.Tensor, self.head.bias), target_prior_logit(c.target_sigma_px, c.image_px))

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One logit per pixel ``(B, P, P)`` (row index north)."""
        c = self.config
        maps = batch["maps"]
        if maps.shape[1] != c.n_map_channels or maps.shape[-1] != c.image_px:
            raise InputError(f"mlp-unet model: expected maps (B, {c.n_map_channels}, {c.image_px}, {c.image_px}), "
                             f"got {tuple(maps.shape)}")
        x = torch.cat([maps.float(), batch["map_valid"].float()], dim=1)      # [B, C+1, P, P]
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)                                                   # level k: [B, ch_k, P/2^k, P/2^k]
        radio = self.rf_mlp(strongest_reports(batch, c.max_bs, c.rank_feature).flatten(1))  # [B, rf_dim]
        x = torch.cat([x, radio[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)   # the bottleneck
        for up, fuse, skip in zip(self.up, self.fuse, skips[-2::-1], strict=True):
            x = fuse(torch.cat([up(x), skip], dim=1))
        return self.head(x)[:, 0]                                              # [B, P, P]

    def forward(self, batch: dict[str, torch.Tensor], targets: torch.Tensor | None = None
                ) -> tuple[HeatmapOutput, torch.Tensor | None]:
        """Logits and argmax for ``batch``; with ``targets`` ``(B, 2)`` (crop coordinates) the BCE loss too."""
        return heatmap_output(self.logits(batch), targets, self.config.target_sigma_px)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_unet_method(ckpt: dict[str, Any], path: str) -> HeatmapMethod:
    """Checkpoint loader of kind ``"mlp-unet"`` (see :mod:`learn.registry`; the file is already checked)."""
    return load_heatmap_checkpoint(ckpt, path, UNetConfig, MlpUNet, KIND)


register_checkpoint_kind(KIND, load_unet_method)
