"""Learning-rate schedules as pure functions of the step (nanoGPT style).

Warmup-stable-decay (seed 004, Sec. 6.3): the rate ramps linearly to ``lr`` over the
first ``warmup_frac`` of the steps, holds, and decays linearly to ``min_lr`` over the last
``decay_frac``. Fine-tuning in seed 004 is the special case ``warmup_frac = 0``,
``decay_frac = 1`` (linear decay from the start).

The one schedule of every model (:func:`learn.train.fit`). Its end value is ``min_lr``,
reached at the last step (``total_steps - 1``): seed 004 decays *to* 0, and with a
configurable ``min_lr`` the last update is the floor the user asked for. (The heatmap
baseline used to carry its own copy that stopped one step short, at ``lr / decay_steps``:
0.05 ``lr`` for 20 decay steps.) With ``min_lr = 0`` the last step makes no update; at the
hundreds of steps of a run that is one step in a few hundred.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.errors import collect

__all__ = ["ScheduleConfig", "wsd_lr", "wsd_lr_at"]


@dataclass(frozen=True)
class ScheduleConfig:
    lr: float = 2e-4              # seed 004: peak 2e-4
    warmup_frac: float = 0.1      # seed 004: 10% of the run (Adam's moment estimates settle first)
    decay_frac: float = 0.2       # WSD's usual cool-down: the last 20 % anneal into a minimum
    min_lr: float = 0.0           # seed 004: decays to 0 (reached at the last step)
    total_steps: int = 1000

    def __post_init__(self) -> None:
        problems = []
        if not self.lr >= 0:  # 0 is allowed: a run that only evaluates or re-saves a checkpoint
            problems.append(f"lr: {self.lr} must be >= 0")
        if not self.min_lr >= 0:
            problems.append(f"min_lr: {self.min_lr} must be >= 0")
        for name in ("warmup_frac", "decay_frac"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}: {getattr(self, name)} is outside [0, 1]")
        if self.warmup_frac + self.decay_frac > 1:
            problems.append(f"warmup_frac + decay_frac: {self.warmup_frac + self.decay_frac} exceeds 1")
        collect(problems, "schedule config")


def wsd_lr(step: int, cfg: ScheduleConfig) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of ``cfg.total_steps``."""
    total = max(int(cfg.total_steps), 1)
    warmup = int(round(cfg.warmup_frac * total))
    decay = int(round(cfg.decay_frac * total))
    decay_start = total - decay
    if warmup > 0 and step < warmup:
        return cfg.lr * (step + 1) / warmup
    if step >= decay_start and decay > 0:
        frac = min(1.0, (step - decay_start + 1) / decay)
        return cfg.lr + (cfg.min_lr - cfg.lr) * frac
    return cfg.lr


def wsd_lr_at(progress: float, cfg: ScheduleConfig) -> float:
    """The learning rate at ``progress`` in [0, 1] of a run whose length is a time budget.

    The same warmup-stable-decay shape as :func:`wsd_lr` over the fraction of the budget
    spent (``train.total_minutes``): warm-up over the first ``warmup_frac``, linear decay
    over the last ``decay_frac`` down to ``min_lr`` at 1. ``cfg.total_steps`` is not used.
    """
    p = min(max(float(progress), 0.0), 1.0)
    decay_start = 1.0 - cfg.decay_frac
    if cfg.warmup_frac > 0 and p < cfg.warmup_frac:
        return cfg.lr * p / cfg.warmup_frac
    if cfg.decay_frac > 0 and p >= decay_start:
        return cfg.lr + (cfg.min_lr - cfg.lr) * min(1.0, (p - decay_start) / cfg.decay_frac)
    return cfg.lr
