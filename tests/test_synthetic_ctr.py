"""The click-log generator (``streamgd make-data --task ctr``): deterministic, Zipf-skewed, bounded, with the
planted truth (interactions included) really in the labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from streamgd.cli.main import invoke, main
from streamgd.errors import ConfigError
from streamgd.bench.synthetic_ctr import default_cardinalities, make_ctr_dataset


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """20,000 rows of the default shape (13 counts, 26 tokens from 3 to 10^6 values)."""
    path = tmp_path_factory.mktemp("ctr") / "clicks.parquet"
    info = make_ctr_dataset(path, n_rows=20_000, row_group_size=5000, seed=3)
    return info, pq.read_table(path)


def test_same_seed_same_bytes_and_a_holdout_shares_the_truth(tmp_path):
    shape = dict(n_rows=3000, n_numeric=3, n_categorical=4, cardinalities=(3, 10, 100, 10_000), row_group_size=700)
    a = make_ctr_dataset(tmp_path / "a.parquet", seed=5, **shape)
    b = make_ctr_dataset(tmp_path / "b.parquet", seed=5, **shape)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 5
    holdout = make_ctr_dataset(tmp_path / "h.parquet", seed=6, model_seed=5, **shape)
    assert holdout.intercept == a.intercept and np.array_equal(holdout.coef, b.coef)
    first, second = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "h.parquet")
    assert not first.column("label").equals(second.column("label"))
    assert set(second.column("C1").drop_null().to_pylist()) == set(a.model.tokens(0, range(3)))


def test_the_most_frequent_value_has_the_zipf_frequency():
    # P(rank 0) = 1 / sum_{r=1..K} r^-s; binomial standard error at 40,000 rows: 0.002
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        info = make_ctr_dataset(f"{tmp}/z.parquet", n_rows=40_000, n_numeric=0, n_categorical=2,
                                cardinalities=(1000, 100_000), zipf=1.1, null_fractions=0.0, interactions=())
        table = pq.read_table(f"{tmp}/z.parquet")
    for k, cardinality in enumerate((1000, 100_000)):
        theory = 1.0 / np.sum(np.arange(1, cardinality + 1) ** -1.1)
        counts = pc.value_counts(table.column(f"C{k + 1}")).to_pylist()
        top = max(counts, key=lambda item: item["counts"])
        assert top["values"] == info.model.tokens(k, [0])[0]
        assert top["counts"] / 40_000 == pytest.approx(theory, abs=0.01), (k, theory)


def test_values_stay_within_each_cardinality_and_tokens_are_8_hex_digits(clicks):
    info, table = clicks
    cardinalities = default_cardinalities(26)
    assert cardinalities[0] == 3 and cardinalities[-1] == 1_000_000
    for k, cardinality in enumerate(cardinalities[:8]):
        seen = set(table.column(f"C{k + 1}").drop_null().to_pylist())
        assert seen <= set(info.model.tokens(k, range(cardinality)))
        if cardinality <= 14:  # 20,000 Zipf draws reach every one of a few values
            assert len(seen) == cardinality
    assert len(set(table.column("C26").drop_null().to_pylist())) < 20_000  # repeats even among 10^6 values
    tokens = table.column("C26").drop_null()
    assert pc.all(pc.match_substring_regex(tokens, "^[0-9a-f]{8}$")).as_py()
    ranks = info.model.ranks(25, np.array([int(t, 16) for t in tokens.to_pylist()[:500]], dtype=np.uint32))
    assert ranks.min() >= 0 and ranks.max() < 1_000_000


def test_null_fractions_and_click_rate_are_as_asked(clicks):
    info, table = clicks
    for k in range(26):
        observed = table.column(f"C{k + 1}").null_count / table.num_rows
        assert observed == pytest.approx(info.null_fractions[k], abs=0.015), k  # SE <= 0.0033
    assert info.null_fractions[4] == 0.3 and info.null_fractions[0] == 0.02
    for j in range(13):
        assert table.column(f"I{j + 1}").null_count / table.num_rows == pytest.approx(0.1, abs=0.015)
    assert 0.22 < info.label_mean < 0.28 and table.column("label").type == "int8"
    assert info.label_mean == pytest.approx(np.mean(table.column("label").to_numpy()))
    counts = table.column("I1").drop_null().to_numpy()
    assert counts.min() >= 0 and np.all(counts == np.floor(counts)) and counts.max() > 5 * np.median(counts)
    # the truth recomputed from the table (tokens mapped back to ranks) scores the labels as the writer did
    margin = info.model.margins(table)
    y = table.column("label").to_numpy()
    assert np.mean(np.logaddexp(0, np.where(y == 1, -margin, margin))) == pytest.approx(info.truth_log_loss)
    assert 0.3 < info.truth_log_loss < 0.5  # below the constant's ~0.56: the features carry signal


def test_the_planted_interaction_is_in_the_labels(tmp_path):
    # Only C1 (3 values) and C2 (4 values): each of the 12 cells' empirical log-odds is the intercept plus the two
    # value effects plus the pair's effect; without the pair's effect the cells are off by several standard errors.
    info = make_ctr_dataset(tmp_path / "pair.parquet", n_rows=100_000, n_numeric=0, n_categorical=2,
                            cardinalities=(3, 4), null_fractions=0.0, interactions="C1:C2", row_group_size=50_000)
    assert info.interactions == [("C1", "C2")]
    table = pq.read_table(tmp_path / "pair.parquet")
    model = info.model
    ranks = [model.ranks(k, np.array([int(t, 16) for t in table.column(f"C{k + 1}").to_pylist()], np.uint32))
             for k in range(2)]
    y = table.column("label").to_numpy()
    planted, additive, empirical, error = [], [], [], []
    for a in range(3):
        for c in range(4):
            cell = (ranks[0] == a) & (ranks[1] == c)
            p = y[cell].mean()
            empirical.append(np.log(p / (1 - p)))
            error.append(1 / np.sqrt(cell.sum() * p * (1 - p)))
            additive.append(model.intercept + model.value_effects(0, [a])[0] + model.value_effects(1, [c])[0])
            planted.append(additive[-1] + model.pair_effects(0, [a], [c])[0])
    empirical, error, planted, additive = map(np.array, (empirical, error, planted, additive))
    assert np.all(np.abs(empirical - planted) < 4 * error), (empirical - planted) / error
    assert np.sum(((empirical - additive) / error) ** 2) > 10 * np.sum(((empirical - planted) / error) ** 2)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ConfigError, match="cardinalities"):
        make_ctr_dataset("unused.parquet", n_rows=10, n_categorical=2, cardinalities=(3,))
    with pytest.raises(ConfigError, match="zipf"):
        make_ctr_dataset("unused.parquet", n_rows=10, zipf=-1.0)
    with pytest.raises(ConfigError, match="null_fractions"):
        make_ctr_dataset("unused.parquet", n_rows=10, null_fractions=1.0)
    with pytest.raises(ConfigError, match="C1..C26"):
        make_ctr_dataset("unused.parquet", n_rows=10, interactions="C1:C1")


def test_make_data_task_ctr_writes_the_click_log(tmp_path, capsys):
    out = tmp_path / "clicks.parquet"
    result = CliRunner().invoke(main, ["make-data", str(out), "--task", "ctr", "--rows", "5000", "--features", "2",
                                       "--categorical", "3", "--cardinalities", "3,50,1000", "--zipf", "1.2",
                                       "--null-fraction", "0.1", "--interactions", "C2:C3", "--ctr", "0.3"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "wrote 5,000 click-log rows (label, I1..I2, C1..C3)" in result.output
    assert "interactions C2 x C3" in result.output
    table = pq.read_table(out)
    assert table.column_names == ["label", "I1", "I2", "C1", "C2", "C3"]
    assert 0.25 < np.mean(table.column("label").to_numpy()) < 0.35
    assert invoke(["make-data", str(tmp_path / "x.parquet"), "--rows", "10", "--zipf", "1.1"]) == 2
    assert invoke(["make-data", str(tmp_path / "x.parquet"), "--task", "ctr", "--rows", "10",
                   "--cardinalities", "3,lots"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == ["error: --zipf applies to --task ctr only",
                      "error: --cardinalities '3,lots': expected comma-separated numbers"]


# ---- low-rank pair effects (issue 28's benchmark data) ----------------------------------------------------------
def _content_digest(table) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(name.encode())
        digest.update("\x00".join("" if v is None else str(v) for v in table.column(name).to_pylist()).encode())
    return digest.hexdigest()


def test_without_factor_rank_the_data_is_what_it_was(tmp_path):
    # The digest, intercept and truth's log loss below were computed with the generator as it was before it had
    # low-rank pair effects (the commit before them): data written by earlier benchmarks stays comparable.
    shape = dict(n_rows=3000, n_numeric=2, n_categorical=6, row_group_size=1000, seed=11)
    info = make_ctr_dataset(tmp_path / "a.parquet", **shape)
    assert _content_digest(pq.read_table(tmp_path / "a.parquet")) == (
        "1ad395d0a0c2bc66a149a8dde8656d3ff01d21d708c3aa54d72db86d318fa7f6")
    assert info.intercept == pytest.approx(-1.070939902976615, abs=1e-12)
    assert info.truth_log_loss == pytest.approx(0.45969609526761346, abs=1e-12)
    assert info.factor_columns == [] and info.model.factor_rank == 0
    make_ctr_dataset(tmp_path / "b.parquet", factor_rank=0, factor_columns="C2,C3", factor_scale=3.0, **shape)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


@pytest.mark.parametrize("field_aware", [False, True], ids=["fm", "ffm"])
def test_the_low_rank_pair_term_is_the_fm_or_ffm_margin_of_the_latent_vectors(tmp_path, field_aware):
    """The generator's pair term, recomputed from the written table, equals tests/fm_reference.py's FM margin
    (Rendle's identity) or FFM margin (its pairwise definition) over one slot per (column, value) whose factor
    row is the value's latent vector; and the table's truth scores the labels as the writer did."""
    from fm_reference import ffm_margin, fm_margin

    columns = (1, 2, 4)
    info = make_ctr_dataset(tmp_path / "f.parquet", n_rows=2000, n_numeric=1, n_categorical=5,
                            cardinalities=(3, 20, 300, 40, 5000), null_fractions=0.2, interactions="C1:C4",
                            factor_rank=3, factor_columns="C2,C3,C5", factor_field_aware=field_aware,
                            row_group_size=600, seed=2)
    assert info.factor_columns == ["C2", "C3", "C5"] and info.model.factor_sigma > 0
    table = pq.read_table(tmp_path / "f.parquet")
    model = info.model
    y = table.column("label").to_numpy()
    margin = model.margins(table)
    assert np.mean(np.logaddexp(0, np.where(y == 1, -margin, margin))) == pytest.approx(info.truth_log_loss,
                                                                                         rel=1e-12)
    ranks = np.stack([model.ranks(k, np.array([0 if t is None else int(t, 16) for t in
                                               table.column(f"C{k + 1}").to_pylist()], np.uint32))
                      for k in range(5)])
    for k in range(5):
        ranks[k][table.column(f"C{k + 1}").is_null().to_numpy(zero_copy_only=False)] = -1
    pair_term = model.factor_pair_margins(ranks)
    assert np.allclose(margin - pair_term, dataclasses.replace(model, factor_rank=0).margins(table), atol=1e-12)
    for row in range(0, 2000, 37):
        present = [(i, k) for i, k in enumerate(columns) if ranks[k, row] >= 0]
        slots = list(range(len(present)))
        if field_aware:  # V[slot, field]: the value's vector for the other column that is that field
            V = np.zeros((len(present), len(columns), 3))
            for slot, (i, k) in enumerate(present):
                for j, other in enumerate(columns):
                    if other != k:
                        V[slot, j] = model.factor_vectors(k, [ranks[k, row]], other)[0]
            expected = ffm_margin(slots, np.ones(len(slots)), [i for i, _ in present], 0.0, np.zeros(len(slots)), V)
        else:
            V = np.array([model.factor_vectors(k, [ranks[k, row]])[0] for _, k in present]).reshape(-1, 3)
            expected = fm_margin(slots, np.ones(len(slots)), 0.0, np.zeros(len(slots)), V)
        assert pair_term[row] == pytest.approx(expected, abs=1e-12), row
    assert np.std(pair_term) > 0.3  # the term is really there


def test_the_low_rank_pair_effect_is_in_the_labels(tmp_path):
    # C1 (3 values) x C2 (4 values) with rank-2 latent vectors and no other pair effect: each cell's empirical
    # log-odds is the intercept + the two value effects + <u_1(a), u_2(c)>, not the additive part alone.
    info = make_ctr_dataset(tmp_path / "lr.parquet", n_rows=100_000, n_numeric=0, n_categorical=2,
                            cardinalities=(3, 4), null_fractions=0.0, interactions=(), factor_rank=2,
                            factor_columns=(0, 1), factor_scale=1.0, row_group_size=50_000)
    table = pq.read_table(tmp_path / "lr.parquet")
    model = info.model
    ranks = [model.ranks(k, np.array([int(t, 16) for t in table.column(f"C{k + 1}").to_pylist()], np.uint32))
             for k in range(2)]
    y = table.column("label").to_numpy()
    u1, u2 = model.factor_vectors(0, np.arange(3)), model.factor_vectors(1, np.arange(4))
    planted, additive, empirical, error = [], [], [], []
    for a in range(3):
        for c in range(4):
            cell = (ranks[0] == a) & (ranks[1] == c)
            p = y[cell].mean()
            empirical.append(np.log(p / (1 - p)))
            error.append(1 / np.sqrt(cell.sum() * p * (1 - p)))
            additive.append(model.intercept + model.value_effects(0, [a])[0] + model.value_effects(1, [c])[0])
            planted.append(additive[-1] + u1[a] @ u2[c])
    empirical, error, planted, additive = map(np.array, (empirical, error, planted, additive))
    assert np.all(np.abs(empirical - planted) < 4 * error), (empirical - planted) / error
    assert np.sum(((empirical - additive) / error) ** 2) > 10 * np.sum(((empirical - planted) / error) ** 2)


def test_bad_factor_arguments_name_the_parameter(tmp_path, capsys):
    with pytest.raises(ConfigError, match="factor_rank"):
        make_ctr_dataset("unused.parquet", n_rows=10, factor_rank=-1)
    with pytest.raises(ConfigError, match="factor_columns"):
        make_ctr_dataset("unused.parquet", n_rows=10, factor_rank=2, factor_columns="C3")
    with pytest.raises(ConfigError, match="factor_columns"):
        make_ctr_dataset("unused.parquet", n_rows=10, factor_rank=2, factor_columns="C3,C27")
    with pytest.raises(ConfigError, match="factor_field_aware"):
        make_ctr_dataset("unused.parquet", n_rows=10, factor_field_aware=True)
    out = str(tmp_path / "x.parquet")
    assert invoke(["make-data", out, "--rows", "10", "--factor-rank", "2"]) == 2
    assert invoke(["make-data", out, "--task", "ctr", "--rows", "10", "--factor-shape", "ffm"]) == 2
    assert invoke(["make-data", out, "--task", "ctr", "--rows", "10", "--factor-rank", "2",
                   "--factor-columns", "C1,seven"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == ["error: --factor-rank applies to --task ctr only",
                      "error: --factor-shape needs --factor-rank R",
                      "error: factor_columns='C1,seven' is not accepted; expected columns such as C6,C9,C11"]


def test_make_data_factor_options_write_and_say_the_low_rank_pairs(tmp_path):
    out = tmp_path / "clicks.parquet"
    result = CliRunner().invoke(main, ["make-data", str(out), "--task", "ctr", "--rows", "3000", "--features", "1",
                                       "--categorical", "4", "--factor-rank", "3", "--factor-columns", "C2,C4",
                                       "--factor-shape", "ffm", "--interactions", ""], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("interactions none, low-rank pairs among C2,C4 (rank 3, ffm)")
    from streamgd.bench.synthetic_ctr import ctr_model

    model = ctr_model(n_numeric=1, n_categorical=4, interactions=(), factor_rank=3, factor_columns=(1, 3),
                      factor_field_aware=True)
    table = pq.read_table(out)
    y = table.column("label").to_numpy()
    margin = model.margins(table)
    plain = dataclasses.replace(model, factor_rank=0).margins(table)
    assert not np.allclose(margin, plain)
    truth = np.mean(np.logaddexp(0, np.where(y == 1, -margin, margin)))
    assert f"the truth's log loss {truth:.4f}" in result.output
