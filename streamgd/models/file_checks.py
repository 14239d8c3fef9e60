"""What a model file's header and tensors must hold before a model is built from them.

A model file is data from outside (copied, edited, written by another version): every field a model reads is
checked here, so a damaged or hand-edited file is one line naming the field, never a traceback later in
``predict`` or ``evaluate``, and never a model that predicts NaN (``tests/test_faults_outputs.py`` fuzzes the
header to hold this).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..data.arrow_numpy import from_numpy, strings
from ..errors import ModelFileError

_LABEL_TYPES = (str, int, float, bool)
_OPTIONAL_OBJECTS = ("config", "summary")


def check_model_fields(meta: Any, tensors: dict[str, Any], path: str, kinds: dict[str, Any]) -> None:
    """Raise ModelFileError (one line naming ``path`` and the field) unless ``meta`` and the ``coef`` and
    ``intercept`` tensors describe a model of one of ``kinds``: known kind, finite float parameters of the shape
    the kind and its classes give, and fields of the types a model reads."""
    def bad(field: str, why: str) -> ModelFileError:
        return ModelFileError(f"{path} is a damaged streamgd model file: {field} {why}")

    if not isinstance(meta, dict):
        raise bad("its metadata", f"is a {type(meta).__name__}, not an object")
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise bad("kind", f"{kind!r} is not a model kind ({', '.join(kinds)})")
    for field in _OPTIONAL_OBJECTS + ("feature_spec",):
        if meta.get(field) is not None and not isinstance(meta[field], dict):
            raise bad(field, f"is a {type(meta[field]).__name__}, not an object")
    history = meta.get("history")
    if history is not None and not (isinstance(history, list) and all(isinstance(e, dict) for e in history)):
        raise bad("history", "is not a list of epoch records")
    if meta.get("target") is not None and not isinstance(meta["target"], str):
        raise bad("target", "is not a column name")
    names = meta.get("feature_names")
    if names is None and meta.get("feature_spec") is None:
        raise bad("feature_names", "is missing")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("feature_names", "is not a list of column names")
    n_out = _check_classes(meta.get("classes"), kinds[kind], bad)
    coef, intercept = (_parameters(tensors, name, bad) for name in ("coef", "intercept"))
    if coef.ndim != 2 or intercept.ndim != 1 or coef.shape[0] != intercept.shape[0]:
        raise bad("coef", f"has shape {coef.shape} and intercept {intercept.shape}; expected (outputs, features) "
                          "and (outputs,)")
    if coef.shape[0] != n_out:
        raise bad("coef", f"has {coef.shape[0]} rows; a {kind} model of these classes has {n_out}")
    if names is not None and coef.shape[1] != len(names):
        raise bad("coef", f"has {coef.shape[1]} columns for {len(names)} feature names")


def _check_classes(classes: Any, model_cls: Any, bad: Any) -> int:
    """The rows of coef a model of this kind with these classes has."""
    if not model_cls.is_classifier:
        if classes is not None:
            raise bad("classes", f"are given for the regressor kind {model_cls.kind!r}")
        return model_cls.n_outputs(None)
    if classes is None:  # a model built in Python without them: labels 0 and 1
        return model_cls.n_outputs(None)
    if not isinstance(classes, list) or len(classes) < 2:
        raise bad("classes", f"{classes!r} are not a list of two or more class labels")
    if not all(isinstance(c, _LABEL_TYPES) for c in classes) or len({type(c) for c in classes}) != 1 \
            or len({repr(c) for c in classes}) != len(classes):
        raise bad("classes", "are not distinct labels of one type (text or numbers)")
    return model_cls.n_outputs(len(classes))


def _parameters(tensors: dict[str, Any], name: str, bad: Any) -> np.ndarray:
    """A parameter tensor: present, floating point, every value finite."""
    if name not in tensors:
        raise bad(name, "is missing")
    values = tensors[name]
    if not isinstance(values, np.ndarray) or values.dtype.kind != "f":
        raise bad(name, f"has dtype {getattr(values, 'dtype', type(values).__name__)}, not a float")
    if not np.isfinite(values).all():
        raise bad(name, "holds NaN or inf")
    return values


def check_spec_applies(spec: Any, n_features: int, path: str) -> None:
    """The model's FeatureSpec turns one probe row (0.0 in each numeric input, "a" in each categorical one) into
    blocks as wide as its coefficients: a spec whose fields have the wrong types or values (a float hash_bits, a
    vocabulary of numbers) fails here, on load, in one line, rather than on the first chunk it predicts."""
    if spec is None:
        return
    try:
        text = {c.name for c in spec.categorical}
        table = pa.table({name: strings(["a"], pa.string()) if name in text else from_numpy(np.zeros(1))
                           for name in spec.input_columns})
        dense, sparse, _ = spec.to_blocks(table, None, np.float64)
        width = dense.shape[1] + (spec.n_slots if sparse is not None else 0)
    except Exception as exc:  # noqa: BLE001 - any failure of a damaged spec is the file's, said in one line
        raise ModelFileError(f"{path} is a damaged streamgd model file: its feature_spec cannot be applied "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if width != n_features:
        raise ModelFileError(f"{path} is a damaged streamgd model file: its feature_spec makes {width} features "
                             f"for {n_features} coefficients")
