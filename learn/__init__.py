"""Learning: datasets over Zarr corpora, localization models, baselines, training and evaluation.

The stage functions, with their CLI verbs (``docs/learn.md``, ``docs/model.md``)::

    learn.import_drive_test(file, bs_file, out) ...            learn import drive-test|rome-nbiot|rome-crop|powder
    learn.evaluate.evaluate(corpus, method, split)             learn eval
    learn.fit_heatmap(corpus, split, out_dir)                  learn fit-baseline heatmap
    learn.fit_baseline("mlp-unet", corpus, split, out_dir)     learn fit-baseline mlp-unet
    learn.pretrain(urls, config, out) / learn.finetune(...)    learn pretrain / finetune
    learn.predict.predict(ckpt, corpus, ...)                   learn predict

Exported here by name and imported on first use (``import learn`` does not import
torch); ``evaluate`` and ``predict`` stay the module names.
"""

from importlib import import_module
from typing import Any

import twin  # noqa: F401  (locates libLLVM for Dr.Jit before anything imports Mitsuba)

_LAZY = {
    **dict.fromkeys(["import_drive_test", "import_rome_nbiot", "import_rome_crop", "import_powder",
                     "SplitConfig", "ImportReport"], "learn.importers"),
    **dict.fromkeys(["EvalResult", "evaluate_named"], "learn.evaluate"),
    **dict.fromkeys(["Predictions", "Method"], "learn.methods"),
    **dict.fromkeys(["WknnBaseline", "KnnSquareBaseline", "WknnSeed004Baseline", "KnnSquareSeed004Baseline",
                     "MapMatchBaseline"], "learn.baselines"),
    **dict.fromkeys(["fit_heatmap", "fit_baseline", "HeatmapRunConfig", "load_heatmap_config",
                     "load_baseline_config"], "learn.heatmap_train"),
    **dict.fromkeys(["MlpUNet", "UNetConfig", "UNetRunConfig"], "learn.unet"),
    **dict.fromkeys(["DomainAdversarial", "grad_reverse", "domain_training_data"], "learn.domain"),
    **dict.fromkeys(["pretrain", "finetune", "fit", "build_model", "TrainConfig", "RunConfig",
                     "load_run_config"], "learn.train"),
    **dict.fromkeys(["CorpusDataset", "DataConfig", "make_loader"], "learn.data"),
    **dict.fromkeys(["PosteriorModel"], "learn.model"),
    **dict.fromkeys(["load_method", "register_checkpoint_kind", "make_baseline", "register_baseline"],
                    "learn.registry"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'learn' has no attribute {name!r}")
