"""streamgd: out-of-core streaming gradient descent (full batch, SGD, mini-batch) on Parquet data.

>>> import streamgd
>>> sorted(streamgd.MODEL_KINDS)
['huber', 'linear', 'logistic', 'poisson', 'softmax', 'squared-hinge', 'svm']
"""

__version__ = "0.1.0"

from .numba_cache import use_user_cache_dir  # noqa: E402

use_user_cache_dir()  # before any compiled function is defined

from .errors import (ConfigError, DataError, DivergenceError, ModelFileError, SchemaError,  # noqa: E402
                     StreamgdError)

# The other public names load on first use (PEP 562), so ``import streamgd`` loads neither pyarrow nor Numba's
# kernels: the command line (``streamgd.launch``) sets the allocators before pyarrow loads.
_LAZY = {"Dataset": "dataset", "Unit": "dataset", "open_dataset": "dataset",
         "MODEL_KINDS": "models", "HuberRegression": "models", "LinearModel": "models", "LinearRegression": "models",
         "LinearSVM": "models", "LogisticRegression": "models", "PoissonRegression": "models",
         "SoftmaxRegression": "models", "SquaredHingeSVM": "models", "load": "models",
         "TrainConfig": "train", "Trainer": "train", "fit": "train",
         "PredictionCounts": "predict", "predict_to_parquet": "predict"}


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


__all__ = ["ConfigError", "DataError", "Dataset", "DivergenceError", "HuberRegression", "LinearModel",
           "LinearRegression", "LinearSVM", "LogisticRegression", "PoissonRegression", "SoftmaxRegression",
           "SquaredHingeSVM", "MODEL_KINDS", "ModelFileError", "PredictionCounts", "SchemaError", "StreamgdError",
           "TrainConfig", "Trainer", "Unit", "fit", "load", "open_dataset", "predict_to_parquet"]
