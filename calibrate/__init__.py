"""Calibration of a twin's base stations against real drive tests (GP Bayesian optimization)."""
