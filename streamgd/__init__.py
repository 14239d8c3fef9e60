"""streamgd: out-of-core streaming gradient descent (full batch, SGD, mini-batch) on Parquet data.

>>> import streamgd
>>> sorted(streamgd.MODEL_KINDS)
['huber', 'linear', 'logistic', 'poisson', 'softmax', 'squared-hinge', 'svm']
"""

from .version import __version__  # noqa: F401 - the package's version

from .errors import ConfigError, DataError, DivergenceError, ModelFileError, SchemaError, StreamgdError

# Importing streamgd changes nothing in the host process: compiled functions find their own disk cache
# (streamgd.kernels.jit), and process-wide settings (allocators) are the command line's (streamgd.cli.launch).

# The other public names load on first use (PEP 562), so ``import streamgd`` loads neither pyarrow nor Numba's
# kernels: the command line (``streamgd.cli.launch``) sets the allocators before pyarrow loads.
_LAZY = {"Dataset": "data.dataset", "Unit": "data.dataset", "open_dataset": "data.dataset",
         "MODEL_KINDS": "models.linear", "HuberRegression": "models.linear", "LinearModel": "models.linear",
         "LinearRegression": "models.linear", "LinearSVM": "models.linear", "LogisticRegression": "models.linear",
         "PoissonRegression": "models.linear", "SoftmaxRegression": "models.linear",
         "SquaredHingeSVM": "models.linear", "load": "models.linear",
         "TrainConfig": "training.config", "Trainer": "training.trainer", "fit": "training.trainer",
         "PredictionCounts": "models.predict", "predict_to_parquet": "models.predict",
         "convert": "data.convert", "ConvertResult": "data.convert"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamgd' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["ConfigError", "ConvertResult", "DataError", "Dataset", "DivergenceError", "HuberRegression", "LinearModel",
           "LinearRegression", "LinearSVM", "LogisticRegression", "PoissonRegression", "SoftmaxRegression",
           "SquaredHingeSVM", "MODEL_KINDS", "ModelFileError", "PredictionCounts", "SchemaError", "StreamgdError",
           "TrainConfig", "Trainer", "Unit", "convert", "fit", "load", "open_dataset", "predict_to_parquet"]
