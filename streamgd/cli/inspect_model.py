"""``streamgd inspect MODEL``: what a saved model holds, as text or as one JSON-ready dict (a model file is told
from a dataset by ``streamgd.cli.file_kinds``)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from ..errors import ConfigError
from ..features.column_report import plural
from ..features.spec import pair_hashes, value_hashes
from ..features.stats import category_strings
from ..models.linear import LinearModel, load

SETTING_KEYS = ("optimizer", "optimizer_options", "lr", "schedule", "warmup", "batch_size", "epochs", "penalty",
                "alpha", "l1_ratio", "clip_norm", "shuffle", "seed", "dtype", "standardize")


def describe_model_file(path: str | os.PathLike, top: int = 20, as_json: bool = False,
                        storage_options: dict | None = None, data: object = None) -> str:
    """The report of a model file (text, or one JSON object); ModelFileError if it is not a streamgd model.
    ``data``: a dataset whose first rows' values say which hash buckets each hashed column uses."""
    model = load(path, storage_options)
    sample = sample_for(model, data, storage_options=storage_options) if data is not None else None
    report = model_report(model, top=top, sample=sample)
    report["path"] = os.fspath(path)
    return json.dumps(report) if as_json else format_report(report)


def model_report(model: LinearModel, top: int = 20, sample: pa.Table | None = None) -> dict:
    """Everything ``inspect`` shows of a model, JSON-ready: coefficients largest (by absolute value) first, and
    the weight norm of each source column (``column_weights``)."""
    if top < 1:
        raise ConfigError(f"--top {top}: expected a number of coefficients >= 1")
    config, summary = model.config, model.summary
    outputs = []
    for k, label in enumerate(output_labels(model)):
        row = model.coef_[k]
        order = np.argsort(-np.abs(row), kind="stable")[:top]
        outputs.append({"output": label, "intercept": float(model.intercept_[k]),
                        "coefficients": [[model.feature_names[j], float(row[j])] for j in order],
                        "zero": int((row == 0).sum()), "not_shown": int(len(row) - len(order))})
    # epochs count from 1 in files written since issue 27; older files counted from 0 (their first record's 0)
    shift = 1 if model.history and model.history[0].get("epoch") == 0 else 0
    history = [{"epoch": int(e["epoch"]) + shift, "loss": e.get("loss"), "validation_loss": e.get("validation_loss"),
                "rows": e.get("rows"), "rows_per_s": e.get("rows_per_s")} for e in model.history]
    return {"kind": model.kind, "target": model.target, "classes": model.classes_, "n_features": model.n_features,
            "transform": transform_lines(model), "standardized": bool(summary.get("feature_transform")),
            "missing": (model.feature_spec or {}).get("missing", "error"),
            "categorical": categorical_inputs(model), "outputs": outputs,
            "interactions": [f"{a}:{b}" for a, b in (model.spec.interactions if model.spec is not None else [])],
            "columns": column_weights(model, sample),
            "settings": {key: config[key] for key in SETTING_KEYS if key in config},
            "epochs": summary.get("epochs", len(model.history)), "steps": summary.get("steps"),
            "best_epoch": summary["best_epoch"] + shift if "best_epoch" in summary else None,
            "history": history, "top": top, "factors": factor_report(model, sample)}


def factor_report(model: LinearModel, sample: pa.Table | None = None) -> dict | None:
    """A factorization machine's factors: k, its fields, and the norm of each source column's factors (grouped
    as ``column_weights`` groups coefficients); None for a linear model."""
    factors = model.factors_
    if factors is None:
        return None
    rows = factors.reshape(factors.shape[0], -1)
    norms = np.zeros((1, model.n_features))  # each feature's factor norm; the dense columns' 0 without factors
    norms[0, model.n_features - rows.shape[0]:] = np.sqrt((rows ** 2).sum(axis=1))
    return {"kind": model.factorization.get("kind", "fm"), "k": int(model.factorization["k"]),
            "fields": model.n_fields, "columns": column_weights(model, sample, norms, scaled=False)}


def output_labels(model: LinearModel) -> list[str]:
    """What each row of ``coef_`` scores: the class of a per-class row, the positive class, or the target."""
    n_out = model.coef_.shape[0]
    classes = model.classes_
    if classes and n_out == len(classes):
        return [f"class {c}" for c in classes]
    if classes and n_out == 1:
        return [f"class {classes[-1]} (vs {classes[0]})"]
    return [str(model.target or "output")] if n_out == 1 else [f"output {k}" for k in range(n_out)]


def categorical_inputs(model: LinearModel) -> dict[str, int | str]:
    """Each categorical input: the number of one-hot values kept, or ``"hashed"``."""
    spec = model.spec
    if spec is None:
        return {}
    return {c.name: "hashed" if spec.column_encoding(c) == "hash" else len(c.vocabulary) for c in spec.categorical}


def column_weights(model: LinearModel, sample: pa.Table | None = None, weights: np.ndarray | None = None,
                   scaled: bool = True) -> list[dict]:
    """Each source column's share of the model, largest first: the L2 norm (over every output) of its weights on
    standardized inputs (a numeric column with its missing indicator; a one-hot column over its slots; a hashed
    column or an interaction over the buckets that the values of ``sample`` fall in). Without a sample, the hashed
    columns are one entry: all the shared buckets, ``"column": None``. ``weights``: other weights per feature
    than ``coef_`` (rows x features; ``scaled`` False: not back on standardized inputs)."""
    spec = model.spec
    coef = np.array(model.coef_ if weights is None else weights, dtype=np.float64)
    transform = model.summary.get("feature_transform")
    if transform and scaled:  # coefficients on raw inputs back to standardized ones, so that columns compare
        scale = np.asarray(transform["scale"], dtype=np.float64)
        coef[:, : scale.shape[0]] *= scale
    entries = []

    def add(column: str | None, kind: str, slots: np.ndarray) -> None:
        entries.append({"column": column, "kind": kind, "slots": int(slots.shape[0]),
                        "norm": float(np.sqrt((coef[:, slots] ** 2).sum()))})

    if spec is None:
        for j, name in enumerate(model.feature_names):
            add(name, "numeric", np.array([j]))
        return sorted(entries, key=lambda e: -e["norm"])
    indicators = iter(range(len(spec.numeric), spec.n_dense))
    for j, column in enumerate(spec.numeric):
        add(column.name, "numeric", np.array([j, next(indicators)] if column.indicator else [j]))
    starts = spec.onehot_starts() + spec.n_dense
    for i, column in enumerate(spec.onehot_columns):
        add(column.name, "one-hot", np.arange(starts[i], starts[i + 1]))
    hash_start = spec.n_dense + spec.n_onehot_slots
    mask = (1 << spec.hash_bits) - 1
    if spec.hashed_columns and sample is None:
        add(None, "hashed", np.arange(hash_start, hash_start + (1 << spec.hash_bits)))
    hashes = {}
    if sample is not None:
        for column in {name for pair in spec.interactions for name in pair} | {c.name for c in spec.hashed_columns}:
            hashes[column] = value_hashes(category_strings(sample.column(column)), column)
        for column in spec.hashed_columns:
            add(column.name, "hashed", hash_start + np.unique(hashes[column.name] & mask))
    own = spec.own_interaction_bits
    for a, b in spec.interactions:
        if own is not None:
            start = spec.n_dense + spec.n_category_slots
            if sample is None:
                add(f"{a}:{b}", "interaction", np.arange(start, start + (1 << own)))
                continue
            add(f"{a}:{b}", "interaction", start + np.unique(pair_hashes(hashes[a], hashes[b]) & ((1 << own) - 1)))
        elif sample is not None:
            add(f"{a}:{b}", "interaction", hash_start + np.unique(pair_hashes(hashes[a], hashes[b]) & mask))
    return sorted(entries, key=lambda e: -e["norm"])


def sample_for(model: LinearModel, data: object, rows: int = 65_536, storage_options: dict | None = None
               ) -> pa.Table:
    """The model's input columns of the data's first units (about ``rows`` rows)."""
    from ..data.unit_reader import UnitTableReader
    from ..models.predict import open_for_model

    dataset = open_for_model(model, data, storage_options=storage_options)
    reader = UnitTableReader(dataset, model.input_columns)
    tables, seen = [], 0
    try:
        for unit in dataset.units:
            tables.append(reader.read(unit))
            seen += tables[-1].num_rows
            if seen >= rows:
                break
    finally:
        reader.close()
    return pa.concat_tables(tables)


def transform_lines(model: LinearModel) -> list[str]:
    """The feature transform in a line or two: standardization, categorical encoding, missing-value policy."""
    transform = model.summary.get("feature_transform")
    if transform:
        scaled = int(sum(1 for m, s in zip(transform["mean"], transform["scale"]) if m != 0.0 or s != 1.0))
        first = (f"standardized ({scaled} of {model.n_features} features centred and scaled by the training "
                 "statistics; folded into the coefficients, which apply to raw inputs)")
    else:
        first = "not standardized (raw features)"
    spec = model.feature_spec
    if not spec:
        return [first, "numeric inputs as they are; missing values: error"]
    parts = []
    hashed, onehot = model.spec.hashed_columns, model.spec.onehot_columns
    if hashed:
        parts.append(f"{len(hashed)} categorical inputs hashed into 2^{spec['hash_bits']} columns")
    if onehot:
        sizes = ", ".join(f"{c.name} {len(c.vocabulary)}" for c in onehot[:5])
        more = ", ..." if len(onehot) > 5 else ""
        parts.append(f"{len(onehot)} categorical inputs one-hot (values kept: {sizes}{more}; the rest: __other__)")
    encoding = "; ".join(parts) or "no categorical inputs"
    indicators = sum(1 for c in spec["numeric"] if c.get("indicator"))
    missing = spec["missing"] + (f" ({indicators} missing indicators)" if spec["missing"] == "impute" else "")
    return [first, f"{len(spec['numeric'])} numeric inputs; {encoding}; missing values: {missing}"]


def column_lines(columns: list[dict], top: int) -> list[str]:
    """The source columns by weight norm, largest first (``top`` of them)."""
    if not columns:
        return []
    lines = ["weight norm per source column (standardized inputs, largest first):"]
    width = max([len(e["column"] or "") for e in columns[:top]] + [12])
    for entry in columns[:top]:
        name = entry["column"] or "(hashed columns)"
        slots = plural(entry["slots"], "slot" if entry["kind"] != "hashed" else "bucket")
        lines.append(f"  {name:<{width}} {entry['norm']:>11.5g}  {entry['kind']}, {slots}")
    if len(columns) > top:
        lines.append(f"  ... {len(columns) - top} more (--top N)")
    if any(e["column"] is None for e in columns):
        lines.append("  (the hashed columns share their buckets: give the data too, streamgd inspect MODEL DATA, "
                     "to attribute them to columns)")
    return lines


def format_report(report: dict) -> str:
    """The text form of ``model_report``."""
    settings = report["settings"]
    classes = report["classes"]
    lines = [f"model:      {report['kind']}" + (f" ({report['path']})" if report.get("path") else ""),
             f"target:     {report['target']}",
             f"classes:    {', '.join(map(str, classes)) if classes else '(regression)'}",
             f"features:   {report['n_features']}",
             *[f"{'transform:' if i == 0 else '':<12}{line}" for i, line in enumerate(report["transform"])]]
    if settings:
        options = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in settings.get("optimizer_options", {}).items() if v is not None)
        penalty = settings.get("penalty")
        strength = "" if penalty == "none" else f" (alpha {settings.get('alpha'):g}" + (
            f", l1_ratio {settings.get('l1_ratio'):g})" if penalty == "elasticnet" else ")")
        lines.append(f"training:   {settings.get('optimizer')}" + (f" ({options})" if options else "")
                     + f", lr {settings.get('lr'):g}, schedule {settings.get('schedule')}, batch size "
                     f"{settings.get('batch_size')}, {plural(report['epochs'], 'epoch')} ({report['steps']} steps), "
                     "penalty "
                     f"{penalty}{strength}")
    if report["best_epoch"] is not None:
        lines.append(f"kept:       the best epoch, {report['best_epoch']} (early stopping)")
    if report["interactions"]:
        lines.append(f"interactions: {', '.join(report['interactions'])}")
    lines += column_lines(report["columns"], report["top"])
    factors = report.get("factors")
    if factors:
        fields = f", {factors['fields']} fields" if factors["fields"] else ""
        lines.append(f"factors:    {factors['kind']}, k {factors['k']}{fields}")
        lines += [line.replace("weight norm per source column (standardized inputs, largest first)",
                               "factor norm per source column (largest first)")
                  for line in column_lines(factors["columns"], report["top"])]
    for output in report["outputs"]:
        lines.append(f"coefficients of {output['output']} (largest first), intercept {output['intercept']:.6g}:")
        width = max([len(name) for name, _ in output["coefficients"]] + [8])
        lines += [f"  {name:<{width}} {value:>+13.6g}" for name, value in output["coefficients"]]
        if output["not_shown"]:
            lines.append(f"  ... {output['not_shown']} more not shown (--top N); {output['zero']} of all "
                         f"{report['n_features']} are exactly 0")
    lines.append("history:" if report["history"] else "history:    (none)")
    for e in report["history"]:
        validation = (f", validation loss {e['validation_loss']:.6g}" if e["validation_loss"] is not None else "")
        rate = f", {e['rows_per_s']:,.0f} rows/s" if e["rows_per_s"] is not None else ""
        lines.append(f"  epoch {e['epoch']}: loss {e['loss']:.6g}{validation}, {e['rows']:,} rows{rate}")
    return "\n".join(lines)
