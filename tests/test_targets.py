"""Label encoding: the compiled path for numeric labels and the Arrow path for the rest give the same indices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from streamgd.errors import DataError
from streamgd.features.targets import LabelEncoder


@pytest.mark.parametrize("classes, arrow_type", [([0, 1], pa.int64()), ([-3, 2, 7], pa.int8()),
                                                 ([0.5, 1.5], pa.float32()), ([False, True], pa.bool_())])
def test_numeric_labels_map_to_their_index_in_two_chunks(classes, arrow_type):
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(classes), 1000)
    labels = [classes[k] for k in picks]
    column = pa.chunked_array([pa.array(labels[:400], arrow_type), pa.array(labels[400:], arrow_type)])
    np.testing.assert_array_equal(LabelEncoder(classes)(column), picks.astype(np.float64))
    with_null = pa.chunked_array([pa.array(labels[:3] + [None], arrow_type)])  # the Arrow path
    np.testing.assert_array_equal(LabelEncoder(classes)(with_null), np.append(picks[:3], np.nan))


def test_nan_is_missing_and_an_unknown_label_is_named():
    encoder = LabelEncoder([1.0, 2.0])
    np.testing.assert_array_equal(encoder(pa.chunked_array([pa.array([2.0, np.nan, 1.0])])), [1.0, np.nan, 0.0])
    with pytest.raises(DataError, match="label 3"):
        LabelEncoder([1, 2])(pa.chunked_array([pa.array([1, 3, 2])]))
    np.testing.assert_array_equal(LabelEncoder(["a", "b"])(pa.chunked_array([pa.array(["b", "a"])])), [1.0, 0.0])
