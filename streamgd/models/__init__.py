"""Trained models: parameters, model files, prediction, evaluation and its metrics."""
