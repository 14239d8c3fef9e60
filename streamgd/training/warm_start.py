"""Continuing training from a saved model (``init=``, the CLI's ``--init``, as Vowpal Wabbit's ``-i``).

A model file holds its coefficients with the standardization folded in, its optimizer state, its feature spec
and transform, and its summary (epochs, steps). Continuing unfolds the coefficients with the model's own stored
transform (no new statistics pass: the transform is the same one), restores the optimizer state, and goes on
with the model's epoch numbering (so epoch 4's shuffle plan is the one a longer run would use) and global step
(so the learning-rate schedule and Adam's bias correction continue). With the same data and settings,
``fit(epochs=3)`` then ``fit(epochs=2, init=model)`` equals ``fit(epochs=5)`` up to the few ulps the fold and
unfold cost.

Not exact: schedules that depend on the total number of steps (``cosine``, and ``exponential`` without
``lr_gamma``) are refused, since the first run's schedule already ended at its own last step; ``asgd`` models
hold the average, not the last iterate, so training continues from the average (a warning says so); a model
that early stopping kept at an earlier epoch continues from that epoch's coefficients with the last epoch's
optimizer state (a warning says so).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..features.standardize import Standardizer
from ..models.linear import LinearModel, load
from ..optim.factors import fold_standardization

# settings that shape the parameters' meaning or the optimizer state: a continued run must share them
SHARED_SETTINGS = ("optimizer", "standardize", "missing", "encoding", "hash_bits", "max_categories", "factors",
                   "factor_numeric", "field_aware")
KEPT_BY_THE_MODEL = ("transforms", "bins")  # a run that names none continues with the model's


def load_init(init: str | os.PathLike | LinearModel, storage_options: dict | None = None) -> LinearModel:
    """The model to start from: a LinearModel, or the path (or URI) of a model file."""
    return init if isinstance(init, LinearModel) else load(init, storage_options)


def describe_init(init: Any) -> str:
    """How the model is named in messages and in the stored settings."""
    return "the given model" if isinstance(init, LinearModel) else os.fspath(init)


def check_settings(model: LinearModel, settings: dict, name: str) -> None:
    """Same kind, optimizer, standardization and feature encoding as the run that wrote ``model``."""
    if model.kind != settings["model"]:
        raise ConfigError(f"{name} is a {model.kind!r} model and this run trains {settings['model']!r}; continue "
                          "with the same --model")
    for key in SHARED_SETTINGS:
        if key in model.config and model.config[key] != settings[key]:
            raise ConfigError(f"{name} was trained with {key}={model.config[key]!r} and this run has {key}="
                              f"{settings[key]!r}; continuing training needs the same {key}")
    for key in KEPT_BY_THE_MODEL:
        if settings.get(key) is not None and key in model.config and model.config[key] != settings[key]:
            raise ConfigError(f"{name} was trained with {key}={model.config[key]!r} and this run names {key}="
                              f"{settings[key]!r}; continuing training keeps the model's (leave the option out)")
    named = settings.get("interactions")
    if named is not None and model.spec is not None and sorted(map(list, named)) != sorted(
            map(list, model.spec.interactions)):
        raise ConfigError(f"{name} was trained with interactions {_pairs(model.spec.interactions)} and this run "
                          f"names {_pairs(named)}; continuing training keeps the model's interactions (leave out "
                          "--interactions)")
    if (getattr(model, "factorization", None) is None) != (settings.get("factors") is None):
        raise ConfigError(f"{name} is {'a linear model' if settings.get('factors') else 'a factorization machine'} "
                          "and this run trains the other; continue with the same --factors")
    schedule = settings["schedule"]
    if schedule == "cosine" or (schedule == "exponential" and settings["lr_gamma"] is None):
        raise ConfigError(f"schedule {schedule!r} depends on the total number of steps, which the run that wrote "
                          f"{name} had already used up; continue with constant, invscaling, step, or exponential "
                          "with an explicit lr_gamma")


def _pairs(pairs) -> str:
    return ",".join(f"{a}:{b}" for a, b in pairs) or "none"


def check_data(model: LinearModel, name: str, classes: list | None, input_columns: list[str],
               ordered: bool = True) -> None:
    """Same classes and the same input columns (in the same order, when they are the features themselves)."""
    if (model.classes_ or None) != (classes or None):
        raise ConfigError(f"{name} was trained on the classes {model.classes_} and this data has {classes}; "
                          "continuing training needs the same classes")
    wanted, found = list(model.input_columns), list(input_columns)
    if (wanted != found) if ordered else (sorted(wanted) != sorted(found)):
        raise ConfigError(f"{name} reads the columns {model.input_columns} and this run has {input_columns}; "
                          "continue with the same features")


def stored_standardizer(model: LinearModel) -> Standardizer | None:
    """The transform the model was trained with, from its summary (None: trained on raw features)."""
    transform = model.summary.get("feature_transform")
    if not transform:
        return None
    return Standardizer(np.asarray(transform["mean"], dtype=np.float64),
                        np.asarray(transform["scale"], dtype=np.float64))


def starting_point(model: LinearModel, name: str, standardizer: Standardizer | None, fresh_state: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The parameters in the trained (standardized) space, the optimizer state, the global step and epoch."""
    coef, intercept = model.coef_, model.intercept_
    block = getattr(model, "factor_block", None)  # a factorization machine's factor rows and their state
    if standardizer is not None and block is not None and (model.factorization or {}).get("numeric"):
        block, coef, intercept = fold_standardization(block, int(model.factorization["k"]), coef, intercept,
                                                      standardizer.mean, standardizer.scale, inverse=True)
    if standardizer is not None:
        coef, intercept = standardizer.standardized_coefficients(coef, intercept)
    params = np.concatenate([coef.ravel(), intercept])
    if block is not None:
        params = np.concatenate([params, block.ravel()])
    state = model.optimizer_state if model.optimizer_state is not None else np.zeros((0, params.size))
    if state.shape != fresh_state.shape:
        raise ConfigError(f"{name} has an optimizer state of shape {state.shape} and this run needs "
                          f"{fresh_state.shape} (the optimizer or the L1 part of the penalty differs); continue "
                          "with the same optimizer and penalty")
    summary = model.summary
    if "steps" not in summary or "epochs" not in summary:
        raise ConfigError(f"{name} does not record its steps and epochs; it cannot be continued")
    if model.config.get("optimizer") == "asgd" and summary["steps"] > model.config.get("optimizer_options", {}).get(
            "average_start", 0):
        warnings.warn(f"{name} holds the average of the asgd iterates, not the last one: training continues from "
                      "the average, which a longer run would not", stacklevel=3)
    if "best_epoch" in summary and summary["best_epoch"] < summary["epochs"]:
        warnings.warn(f"{name} kept its best epoch ({summary['best_epoch']} of {summary['epochs']}): training "
                      "continues from it with the optimizer state of the last epoch", stacklevel=3)
    return params, np.array(state, dtype=np.float64), int(summary["steps"]), int(summary["epochs"])
