"""The registries are the single source of names, defaults and help: validation, the command line's choices and
help, and TrainConfig's defaults all read them."""

from __future__ import annotations

import click
import pytest

from streamgd.cli.main import invoke, main
from streamgd.training.config import SCHEDULE_FALLBACKS, TrainConfig
from streamgd.errors import ConfigError
from streamgd.models.linear import MODEL_KINDS
from streamgd.optim import OPTIMIZERS, SCHEDULES, hyperparameter_table
from streamgd.optim.penalties import PENALTIES
from streamgd.data.shuffle import MODES, parse_shuffle, takes_unit_count

REGISTRIES = {"model": MODEL_KINDS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "penalty": PENALTIES}


def fit_option(name: str) -> click.Option:
    return next(p for p in main.get_command(None, "fit").params if p.name == name)


@pytest.mark.parametrize("setting", list(REGISTRIES))
def test_the_command_line_choices_are_the_registry(setting):
    assert list(fit_option(setting).type.choices) == list(REGISTRIES[setting])


@pytest.mark.parametrize("setting", list(REGISTRIES))
def test_a_bad_name_is_one_line_naming_every_accepted_name(setting):
    with pytest.raises(ConfigError) as raised:
        TrainConfig(**{setting: "nope"}).validate()
    assert str(raised.value) == f"{setting}='nope' is not accepted; expected one of {', '.join(REGISTRIES[setting])}"


@pytest.mark.parametrize("setting", list(REGISTRIES))
def test_the_command_line_refuses_a_bad_name_in_one_line(setting, capsys, tmp_path):
    assert invoke(["fit", str(tmp_path), "--target", "y", f"--{setting}", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'nope' is not one of '{next(iter(REGISTRIES[setting]))}'" in err[0]


@pytest.mark.parametrize("setting", ["model", "optimizer", "penalty", "shuffle"])
def test_command_line_defaults_are_train_config_defaults(setting):
    assert fit_option(setting).default == getattr(TrainConfig(), setting)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_default_schedule_is_filled_in(name):
    config = TrainConfig(optimizer=name, epochs=1).validate()
    wanted = {**SCHEDULE_FALLBACKS, **OPTIMIZERS[name].default_schedule}
    assert (config.schedule, config.lr_decay, config.lr_power) == (wanted["schedule"], wanted["lr_decay"],
                                                                   wanted["lr_power"])
    named = TrainConfig(optimizer=name, epochs=1, schedule="constant", lr_decay=0.5).validate()
    assert (named.schedule, named.lr_decay) == ("constant", 0.5)  # a named setting wins


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
def test_model_kind_defaults_scale_the_rate_and_set_clipping(kind):
    config = TrainConfig(model=kind, optimizer="sgd", epochs=5).validate()  # the dense defaults
    cls = MODEL_KINDS[kind]
    assert config.learning_rate == OPTIMIZERS["sgd"].default_lr[0] * cls.default_lr_scale
    assert config.clip_norm == cls.default_clip_norm
    assert TrainConfig(model=kind, lr=0.7, clip_norm=0.0).validate().learning_rate == 0.7


def test_poisson_defaults_are_a_quarter_of_the_rate_and_clipping_at_one():
    config = TrainConfig(model="poisson", optimizer="sgd", epochs=5).validate()
    assert (config.learning_rate, config.clip_norm) == (0.05, 1.0)


def test_every_hyperparameter_has_one_option_whose_help_names_its_optimizers_and_defaults():
    for name, takers in hyperparameter_table().items():
        option = fit_option(name)
        for optimizer, (default, _) in takers.items():
            assert optimizer in option.help and f"{default:g}" in option.help, (name, option.help)


@pytest.mark.parametrize("setting", list(REGISTRIES))
def test_every_entry_has_a_summary_in_the_help(setting):
    text = fit_option(setting).help
    for name, summary in REGISTRIES[setting].summaries.items():
        assert summary and f"{name}" in text and summary in text


@pytest.mark.parametrize("name", list(MODES))
def test_every_shuffle_mode_parses_and_round_trips(name):
    text = f"{name}:3" if takes_unit_count(name) else name
    assert str(parse_shuffle(text)) == text
    assert MODES[name].SYNTAX.split(":")[0] == name
    with pytest.raises(ConfigError, match=r"^shuffle='sometimes' is not accepted; expected one of none, row-groups"):
        parse_shuffle("sometimes")
