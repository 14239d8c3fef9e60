"""Errors streamgd raises for bad input: one clear sentence, never a traceback at the CLI."""


class StreamgdError(Exception):
    """Base class of every error streamgd reports to a user."""


class DataError(StreamgdError):
    """The data cannot be used: a missing path, a corrupt file, a wrong column, NaN or inf."""


class SchemaError(DataError):
    """Files of one dataset disagree on their columns or types."""


class ModelFileError(StreamgdError):
    """A model or checkpoint file is not one streamgd can load."""


class ConfigError(StreamgdError, ValueError):
    """A parameter has a value streamgd does not accept."""


class DivergenceError(StreamgdError):
    """Training produced a NaN or inf loss or parameter."""


class TrainingInterrupted(StreamgdError):
    """Training was stopped by the user (Ctrl-C) after a chunk; a checkpoint holds the state if one was asked."""


class StorageError(StreamgdError):
    """An object store refused a request (credentials, permissions, a missing bucket) or kept failing after its
    retries; the message names the object."""
