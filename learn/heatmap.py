"""The MapRadioFormer-style heatmap baseline (seed 004 §6.2, appendix G), in plain PyTorch.

A ViT reads the map crop as ``(P / p)²`` patch tokens together with one *radio token*
per event; the image-patch output tokens become a heatmap over the crop::

    patches   maps (B, C, P, P) + map_valid  --conv p x p, stride p-->  (B, N, D) + learned position
    radio     [features, feature_valid, bs_xy, bs_valid, dt] --shared MLP (hidden, ReLU)--> (B, T, D)
              + Fourier encoding of the BS xy (crop coordinates; zero when unknown) + a type embedding
    encoder   L pre-norm Transformer blocks over the N + T tokens (padding events masked)
    head      each block's patch tokens batch-normalized (one BatchNorm per block), averaged over
              blocks, projected to p·p·c_out, unpatched (appendix G) to (B, c_out, P, P),
              3 x 3 convolution -> one logit per pixel; sigmoid = the heatmap

Training minimizes the binary cross-entropy between the logits and a Gaussian bump
(peak 1, ``target_sigma_px``, centred on the exact truth in pixel units) of the truth;
inference takes the argmax pixel's centre. Images follow :mod:`learn.data`: row index
grows north, pixel ``[r, c]`` centred at ``crop_origin_m + ((c + 0.5) / P, (r + 0.5) /
P) * crop_size_m`` (:class:`learn.data.crops.CropFrame`). The crop is the evaluation crop
of :mod:`learn.data.crops` (the truth inside, not centred; the same squares as
``knn-square``). ``forward(batch, targets=None) -> (HeatmapOutput, loss)`` is the
interface of every model of :func:`learn.train.fit`, which trains it
(:func:`learn.heatmap_train.fit_heatmap`).

Presets (``learn/presets/heatmap_*.yaml``, :func:`learn.heatmap_train.load_heatmap_config`):
``small`` (64 px, 8 px patches, width 128, 4 blocks; trains on a CPU) and ``full`` (seed
004: 224 px, 14 px patches = 16 x 16 tokens, DINOv2-L/14 width 1024, 24 blocks, 16 heads,
radio MLP 256 -> 1024; about 3·10^8 parameters). No weights are
downloaded: ``init_weights`` loads a local state dict (:func:`load_init_weights`).
Checkpoint kind ``"heatmap"`` (:func:`load_heatmap_method`, registered on import).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from learn.data.crops import pixel_centre
from learn.data.dataset import CorpusDataset, DataConfig
from learn.data.loader import make_loader
from learn.methods import Predictions
from learn.registry import register_checkpoint_kind
from twin.config import from_dict
from twin.corpus.store import Corpus, open_corpus
from twin.errors import CheckpointError, InputError

__all__ = ["HeatmapConfig", "HeatmapNet", "HeatmapOutput", "KIND", "unpatch", "gaussian_targets",
           "heatmap_loss", "heatmap_output", "target_prior_logit", "decode_argmax", "HeatmapMethod",
           "load_heatmap_method", "load_heatmap_checkpoint", "load_init_weights"]

KIND = "heatmap"  # the checkpoint kind (learn.registry)


@dataclass(frozen=True)
class HeatmapConfig:
    """Architecture and target settings.

    ``image_px`` (the crop's pixels, ``data.crop_px``), ``n_features`` and
    ``n_map_channels`` come from the data and are saved in the checkpoint; the crop's
    side and placement are the run's :class:`learn.data.dataset.DataConfig`.
    """

    image_px: int = 64            # the small preset's crop: 9.4 m pixels over 600 m, trains on a CPU
    patch_px: int = 8             # 8 x 8 = 64 patch tokens: attention stays cheap on a CPU
    dim: int = 128                # width of the small ViT (0.7 M parameters); full: DINOv2-L's 1024
    depth: int = 4
    heads: int = 4                # 32 dimensions per head, as in ViT-S
    mlp_ratio: float = 2.0        # half ViT's 4: the small sets (~1,000 samples) overfit a wider MLP
    radio_hidden: int = 128       # the radio-token MLP's hidden width (seed 004: 256 for the full model)
    out_channels: int = 3         # appendix G: 3 channels unpatched before the 3 x 3 output convolution
    fourier_bands: int = 8        # octaves of the BS position: down to 1/256 of the crop (~2 m over 600 m)
    dropout: float = 0.0          # trained briefly on few samples: early stopping on val regularizes
    target_sigma_px: float = 1.5  # the bump spans ~3 px: gradients on neighbours, argmax still sharp
    n_features: int = 4
    n_map_channels: int = 0

    def __post_init__(self) -> None:
        if self.image_px % self.patch_px:
            raise InputError(f"heatmap config: image_px {self.image_px} is not a multiple of patch_px {self.patch_px}")
        if self.dim % self.heads:
            raise InputError(f"heatmap config: dim {self.dim} is not a multiple of heads {self.heads}")

    @property
    def grid_patches(self) -> int:
        return self.image_px // self.patch_px

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, float) else int(v)) for k, v in asdict(self).items()}

    def with_data(self, feature_names: list[str], n_map_channels: int, image_px: int) -> HeatmapConfig:
        """This config with the data-dependent sizes of a training run (its features, map channels, crop pixels)."""
        return replace(self, n_features=len(feature_names), n_map_channels=int(n_map_channels),
                       image_px=int(image_px))


def unpatch(tokens: torch.Tensor, channels: int, patch_px: int) -> torch.Tensor:
    """Appendix G: ``(B, h·w, c·p·p)`` tokens (row-major patches) to an image ``(B, c, h·p, w·p)``."""
    b, n, d = tokens.shape
    h = w = math.isqrt(n)
    if h * w != n or d != channels * patch_px**2:
        raise ValueError(f"unpatch: {n} tokens of {d} values are not a square of {channels}x{patch_px}x{patch_px}")
    x = tokens.reshape(b, h, w, channels, patch_px, patch_px)   # [B, h, w, c, p, p]
    x = x.permute(0, 3, 1, 4, 2, 5)                              # [B, c, h, p, w, p]
    return x.reshape(b, channels, h * patch_px, w * patch_px)


def _fourier(xy: torch.Tensor, bands: int) -> torch.Tensor:
    """Sin/cos of ``2^k π xy`` for k < bands: ``(..., 2)`` -> ``(..., 4 bands)``."""
    freq = (2.0 ** torch.arange(bands, device=xy.device, dtype=xy.dtype)) * math.pi
    ang = xy[..., None] * freq                                   # [..., 2, bands]
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


@dataclass
class HeatmapOutput:
    """What the heatmap model predicts for a batch."""

    logits: torch.Tensor          # [B, P, P] one logit per pixel (row index north)
    xy: torch.Tensor              # [B, 2] the argmax pixel's centre in crop coordinates
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample loss terms ("bce")


class HeatmapNet(nn.Module):
    """The heatmap ViT; ``forward(batch, targets=None) -> (HeatmapOutput, loss or None)``."""

    LOSS_PARTS = ("bce",)  # the per-sample terms of ``output.parts`` (metrics.csv columns)

    def __init__(self, config: HeatmapConfig):
        super().__init__()
        self.config = config
        c, d, p = config, config.dim, config.patch_px
        n_patches = config.grid_patches**2
        self.patch_embed = nn.Conv2d(c.n_map_channels + 1, d, kernel_size=p, stride=p)
        self.patch_pos = nn.Parameter(torch.zeros(1, n_patches, d))
        radio_in = 2 * c.n_features + 4
        self.radio_mlp = nn.Sequential(nn.Linear(radio_in, c.radio_hidden), nn.ReLU(),
                                       nn.Linear(c.radio_hidden, d))
        self.bs_pos = nn.Linear(4 * c.fourier_bands, d)
        self.radio_type = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(d, c.heads, int(d * c.mlp_ratio), c.dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(c.depth)])
        self.layer_norms = nn.ModuleList([nn.BatchNorm1d(d) for _ in range(c.depth)])
        self.project = nn.Linear(d, c.out_channels * p * p)
        self.conv = nn.Conv2d(c.out_channels, 1, kernel_size=3, padding=1)
        nn.init.trunc_normal_(self.patch_pos, std=0.02)
        nn.init.trunc_normal_(self.radio_type, std=0.02)
        nn.init.constant_(cast(torch.Tensor, self.conv.bias), target_prior_logit(c.target_sigma_px, c.image_px))

    def tokens(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch and radio tokens ``(B, N + T, D)`` and the key padding mask ``(B, N + T)``."""
        c = self.config
        maps = batch["maps"]
        if maps.shape[1] != c.n_map_channels or maps.shape[-1] != c.image_px:
            raise InputError(f"heatmap model: expected maps (B, {c.n_map_channels}, {c.image_px}, {c.image_px}), "
                             f"got {tuple(maps.shape)}")
        image = torch.cat([maps, batch["map_valid"].to(maps.dtype)], dim=1)   # [B, C+1, P, P]
        patches = self.patch_embed(image).flatten(2).transpose(1, 2) + self.patch_pos  # [B, N, D]
        mask = batch["mask"]
        valid = batch["feature_valid"].to(maps.dtype)
        feats = batch["features"] * valid                                  # [B, T, F]
        bs_ok = batch["bs_valid"].to(maps.dtype)[..., None]               # [B, T, 1]
        bs_xy = batch["bs_xy"] * bs_ok                                     # [B, T, 2]
        t = batch["time_s"]
        t_last = torch.where(mask, t, torch.full_like(t, -torch.inf)).amax(dim=1, keepdim=True)
        dt = torch.where(mask, (t - t_last.clamp_min(-1e30)) / 10.0, 0.0)[..., None]  # [B, T, 1] tens of s
        radio_in = torch.cat([feats, valid, bs_xy, bs_ok, dt], dim=-1)    # [B, T, 2F+4]
        radio = self.radio_mlp(radio_in) + self.bs_pos(_fourier(bs_xy, c.fourier_bands)) * bs_ok + self.radio_type
        tokens = torch.cat([patches, radio], dim=1)                         # [B, N+T, D]
        pad = torch.cat([torch.zeros(patches.shape[:2], dtype=torch.bool, device=mask.device), ~mask], dim=1)
        return tokens, pad

    def forward(self, batch: dict[str, torch.Tensor], targets: torch.Tensor | None = None
                ) -> tuple[HeatmapOutput, torch.Tensor | None]:
        """Logits and argmax for ``batch``; with ``targets`` ``(B, 2)`` (crop coordinates) the BCE loss too."""
        return heatmap_output(self.logits(batch), targets, self.config.target_sigma_px)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One logit per pixel ``(B, P, P)`` (row index north)."""
        c = self.config
        x, pad = self.tokens(batch)
        n = c.grid_patches**2
        acc = 0.0
        for block, norm in zip(self.blocks, self.layer_norms, strict=True):
            x = block(x, src_key_padding_mask=pad)
            patch = x[:, :n]                                                # [B, N, D]
            acc = acc + norm(patch.reshape(-1, c.dim)).reshape(patch.shape)
        out = self.project(acc / c.depth)                                   # [B, N, c_out p p]
        image = unpatch(out, c.out_channels, c.patch_px)                    # [B, c_out, P, P]
        return self.conv(image)[:, 0]                                       # [B, P, P] logits


def gaussian_targets(target_xy: torch.Tensor, px: int, sigma_px: float) -> torch.Tensor:
    """Gaussian bumps ``(B, P, P)`` (peak 1 at the exact truth ``target_xy`` ``(B, 2)`` in crop units)."""
    centres = pixel_centre(torch.arange(px, dtype=target_xy.dtype, device=target_xy.device), px)  # [P] crop units
    dx = (centres[None, None, :] - target_xy[:, 0, None, None]) * px    # [B, 1, P] along columns (east), pixels
    dy = (centres[None, :, None] - target_xy[:, 1, None, None]) * px    # [B, P, 1] along rows (north), pixels
    return torch.exp(-(dx**2 + dy**2) / (2.0 * sigma_px**2))


def target_prior_logit(sigma_px: float, px: int) -> float:
    """The log-odds of the target's mean value (the bump's share of the ``px x px`` pixels): the output bias at start.

    A zero bias (p = 0.5 everywhere) costs thousands of steps of unlearning before any localization.
    """
    prior = min(0.5, 2 * math.pi * sigma_px**2 / px**2)
    return math.log(prior / (1 - prior))


def heatmap_output(logits: torch.Tensor, targets: torch.Tensor | None, sigma_px: float
                   ) -> tuple[HeatmapOutput, torch.Tensor | None]:
    """What a heatmap model gives the training loop from its logits ``(B, P, P)`` (row index north).

    ``output.xy`` is the argmax pixel's centre ``(B, 2)`` in crop coordinates; with ``targets``
    ``(B, 2)`` (crop coordinates) also the per-sample BCE against :func:`gaussian_targets`
    (``output.parts["bce"]``, ``(B,)``) and its mean, the loss. Shared by every heatmap model
    (:class:`HeatmapNet`, :class:`learn.unet.MlpUNet`).
    """
    b, px, _ = logits.shape
    flat = logits.detach().reshape(b, -1).argmax(dim=1)
    xy = torch.stack([pixel_centre(flat % px, px), pixel_centre(flat // px, px)], dim=1).float()
    out = HeatmapOutput(logits, xy)
    if targets is None:
        return out, None
    target = gaussian_targets(targets.float(), px, sigma_px)
    bce = nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    out.parts = {"bce": bce.mean(dim=(1, 2))}
    return out, out.parts["bce"].mean()


def heatmap_loss(logits: torch.Tensor, target_xy: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Mean binary cross-entropy of the per-pixel logits against :func:`gaussian_targets`."""
    target = gaussian_targets(target_xy, logits.shape[-1], sigma_px)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def decode_argmax(logits: torch.Tensor, crop_origin_m: torch.Tensor, crop_size_m: torch.Tensor) -> torch.Tensor:
    """The argmax pixel's centre in scene metres ``(B, 2)`` (float64)."""
    b, px, _ = logits.shape
    flat = logits.reshape(b, -1).argmax(dim=1)
    r, c = flat // px, flat % px
    xy = torch.stack([pixel_centre(c, px), pixel_centre(r, px)], dim=1).double()
    return crop_origin_m.double() + xy * crop_size_m.double()[:, None]


class HeatmapMethod:
    """A trained heatmap model (any module with ``logits(batch) -> (B, P, P)``) as an evaluation method.

    ``name`` is the method's name in evaluation results (its checkpoint kind: ``heatmap``, ``mlp-unet``).
    """

    def __init__(self, model: nn.Module, data_state: dict[str, Any], batch_size: int = 64, name: str = KIND):
        self.model = model.eval()
        self.data_state = data_state
        self.batch_size = batch_size
        self.name = name

    def dataset(self, corpus: Corpus | str, indices: np.ndarray, prior: Any = None) -> CorpusDataset:
        from learn.priors import crop_origins_m

        corpus = corpus if isinstance(corpus, Corpus) else open_corpus(corpus)
        st = self.data_state
        cfg = DataConfig.from_dict(st["data_config"])
        origins = crop_origins_m(prior, corpus, np.asarray(indices, np.int64), cfg.crop_size_m, "the heatmap model")
        return CorpusDataset([corpus.url], [np.asarray(indices, np.int64)], cfg, training=False,
                             normalization=st["normalization"], cell_vocab=st["cell_vocab"], crop_origins_m=origins,
                             physics_maps=False)  # the heatmap models read no physics maps

    @torch.no_grad()
    def predict(self, corpus: Corpus, indices: np.ndarray, prior: Any = None) -> Predictions:
        """MAP pixel of the heatmap over the crop ``prior`` placed (default truth-free)."""
        loader = make_loader(self.dataset(corpus, indices, prior), batch_size=self.batch_size)
        logits = cast(Any, self.model).logits
        out = [decode_argmax(logits(b), b["crop_origin_m"], b["crop_size_m"]) for b in loader]
        return Predictions(xy_m=torch.cat(out).numpy() if out else np.zeros((0, 2)))


def load_init_weights(model: nn.Module, path: str | os.PathLike) -> tuple[int, int]:
    """Load a local state dict (or a checkpoint's ``model``) into ``model`` where names and shapes match.

    Returns ``(loaded, total)`` tensor counts; raises :class:`CheckpointError` when nothing
    matches. A toolkit checkpoint (a dict with ``kind``) is checked as every checkpoint is
    (:func:`learn.checkpoint.check_checkpoint`: keys, ``schema_version``).
    """
    from learn.checkpoint import check_checkpoint, read_torch_file

    path = os.fspath(path)
    state = read_torch_file(path, "weights")
    if isinstance(state, dict) and "kind" in state:
        state = check_checkpoint(state, path, kind=None)["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor)")
    own = model.state_dict()
    match = {k: v for k, v in state.items()
             if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not match:
        raise CheckpointError(f"{path}: no tensor matches the model by name and shape "
                              f"(the file has {len(state)} entries, the model {len(own)})")
    model.load_state_dict(match, strict=False)
    return len(match), len(own)


def load_heatmap_checkpoint(ckpt: dict[str, Any], path: str, config_cls: type, net_cls: Callable[[Any], nn.Module],
                            name: str) -> HeatmapMethod:
    """A heatmap-model checkpoint (already checked) as a :class:`HeatmapMethod`: ``net_cls(config_cls(...))``
    with its weights, inputs rebuilt from its data config, normalization and cell vocabulary."""
    from learn.checkpoint import load_model_state

    try:
        config: Any = from_dict(config_cls, ckpt["configs"]["model"], f"{path} model config")
        model = net_cls(config)
        load_model_state(model, ckpt["model"], path)
        data_state = {"data_config": ckpt["configs"]["data"], "normalization": ckpt["data_info"]["normalization"],
                      "cell_vocab": ckpt["cell_vocab"]}
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: malformed {name} checkpoint ({type(err).__name__}: {err})") from err
    return HeatmapMethod(model, data_state, name=name)


def load_heatmap_method(ckpt: dict[str, Any], path: str) -> HeatmapMethod:
    """Checkpoint loader of kind ``"heatmap"`` (see :mod:`learn.registry`; the file is already checked)."""
    return load_heatmap_checkpoint(ckpt, path, HeatmapConfig, HeatmapNet, KIND)


register_checkpoint_kind(KIND, load_heatmap_method)
