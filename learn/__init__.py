"""Learning: datasets over Zarr corpora, localization models, baselines, training and evaluation."""
