"""streamgd: out-of-core streaming gradient descent on Parquet data."""

__version__ = "0.1.0"

from .errors import ConfigError, DataError, DivergenceError, ModelFileError, SchemaError, StreamgdError  # noqa: E402
from .dataset import Dataset, Unit, open_dataset  # noqa: E402
