"""streamgd: out-of-core streaming gradient descent (full batch, SGD, mini-batch) on Parquet data.

>>> import streamgd
>>> sorted(streamgd.MODEL_KINDS)
['linear', 'logistic']
"""

__version__ = "0.1.0"

from .errors import (ConfigError, DataError, DivergenceError, ModelFileError, SchemaError,  # noqa: E402
                     StreamgdError)
from .dataset import Dataset, Unit, open_dataset  # noqa: E402
from .models import MODEL_KINDS, LinearModel, LinearRegression, LogisticRegression, load  # noqa: E402
from .train import TrainConfig, Trainer, fit  # noqa: E402
from .predict import predict_to_parquet  # noqa: E402

__all__ = ["ConfigError", "DataError", "Dataset", "DivergenceError", "LinearModel", "LinearRegression",
           "LogisticRegression", "MODEL_KINDS", "ModelFileError", "SchemaError", "StreamgdError", "TrainConfig",
           "Trainer", "Unit", "fit", "load", "open_dataset", "predict_to_parquet"]
