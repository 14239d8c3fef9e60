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
from .dataset import Dataset, Unit, open_dataset  # noqa: E402
from .models import (MODEL_KINDS, HuberRegression, LinearModel, LinearRegression, LinearSVM,  # noqa: E402
                     LogisticRegression, PoissonRegression, SoftmaxRegression, SquaredHingeSVM, load)
from .train import TrainConfig, Trainer, fit  # noqa: E402
from .predict import PredictionCounts, predict_to_parquet  # noqa: E402

__all__ = ["ConfigError", "DataError", "Dataset", "DivergenceError", "HuberRegression", "LinearModel",
           "LinearRegression", "LinearSVM", "LogisticRegression", "PoissonRegression", "SoftmaxRegression",
           "SquaredHingeSVM", "MODEL_KINDS", "ModelFileError", "PredictionCounts", "SchemaError", "StreamgdError",
           "TrainConfig", "Trainer", "Unit", "fit", "load", "open_dataset", "predict_to_parquet"]
