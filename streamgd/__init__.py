"""streamgd: out-of-core streaming gradient descent (full batch, SGD, mini-batch) on Parquet data.

>>> import streamgd
>>> sorted(streamgd.MODEL_KINDS)
['huber', 'linear', 'logistic', 'poisson', 'softmax', 'squared-hinge', 'svm']
"""

from .version import __version__  # noqa: E402

from .kernels.numba_cache import use_user_cache_dir  # noqa: E402

use_user_cache_dir()  # before any compiled function is defined

from .errors import ConfigError, DataError, DivergenceError, ModelFileError, SchemaError, StreamgdError  # noqa: E402

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
