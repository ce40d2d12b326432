"""The run spec: defaults, TOML and --set overrides, and one clear error per bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from comparisons.run.spec import RunSpec, SpecError, load_spec


def test_the_default_is_the_occupancy_model():
    spec = RunSpec()
    assert (spec.dataset, spec.activation, spec.loss, spec.batch_size, spec.optimizer.name) == (
        "occupancy",
        "sigmoid",
        "bce_logits",
        50,
        "sgd",
    )


def test_toml_then_set_override_in_that_order(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('activation = "tanh"\nlr = 1\nhidden = [16, 8]\n', encoding="utf-8")
    spec = load_spec(config, ["lr=0.25", "shuffle=false", "optimizer=adam"])
    assert spec.activation == "tanh" and spec.hidden == (16, 8)
    assert spec.optimizer.lr == 0.25 and spec.shuffle is False and spec.optimizer.name == "adam"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("colour=blue", "colour: unknown key"),
        ("batch_size=-3", "batch_size: must be >= 1"),
        ("batch_size=2.5", "batch_size: expected an integer"),
        ("lr=fast", "lr: expected a number"),
        ("activation=swish", "activation: unknown value 'swish'"),
        ("hidden=[4, 0]", "hidden: every width must be >= 1"),
        ("shuffle=1", "shuffle: expected true or false"),
        ('engines=["torch", "tensorflow"]', "engines: unknown value 'tensorflow'; choose one of"),
        ("loss=bce", "loss 'bce' expects output activation 'sigmoid'"),
        ("momentum=1.5", r"momentum must be in \[0, 1\)"),
        ("lr", "expected key=value"),
    ],
)
def test_bad_values_name_the_key(assignment, message):
    with pytest.raises(SpecError, match=message):
        load_spec(None, [assignment])


def test_rmsprop_takes_its_decay_as_alpha_and_elu_is_an_activation():
    spec = load_spec(None, ["optimizer=rmsprop", "lr=0.01", "alpha=0.9", "activation=elu"])
    assert (spec.optimizer.name, spec.optimizer.alpha, spec.activation) == ("rmsprop", 0.9, "elu")
    assert spec.mlp(5, 1).hidden == "elu"
    assert spec.to_dict()["alpha"] == 0.9
    assert RunSpec().optimizer.alpha == 0.99  # PyTorch's RMSprop default, not optax's 0.9


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("alpha=1", r"optimizer: alpha must be in \[0, 1\); got 1"),
        ("alpha=-0.5", r"optimizer: alpha must be in \[0, 1\)"),
        ("alpha=nan", "optimizer: alpha must be a finite number"),
        ("alpha=slow", "alpha: expected a number"),
    ],
)
def test_a_bad_rmsprop_alpha_names_the_key(assignment, message):
    with pytest.raises(SpecError, match=message):
        load_spec(None, ["optimizer=rmsprop", assignment])


def test_momentum_without_momentum_is_refused():
    with pytest.raises(SpecError, match="optimizer: nesterov needs momentum > 0"):
        load_spec(None, ["optimizer=nesterov", "momentum=0"])


def test_a_broken_config_file_names_the_file(tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text("lr = = 1\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"broken\.toml: not valid TOML"):
        load_spec(config)
    with pytest.raises(SpecError, match=r"missing\.toml: cannot read"):
        load_spec(tmp_path / "missing.toml")


def test_to_dict_round_trips(tmp_path):
    spec = load_spec(None, ["hidden=[3]", "activation=relu"])
    assert RunSpec().replace(**spec.to_dict()) == spec


CONFIGS = sorted((Path(__file__).parents[3] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_is_a_valid_run_spec(path):
    assert isinstance(load_spec(str(path), [], {}), RunSpec)  # SpecError names a bad key


@pytest.mark.parametrize(
    ("where", "key", "nearest"),
    [
        ("--set", "hiden", "did you mean hidden?"),
        ("--set", "drop_out", "did you mean dropout or drop_last?"),
        ("config", "optimiser", "did you mean optimizer?"),
        ("replace", "batchsize", "did you mean batch_size?"),
    ],
)
def test_a_near_miss_key_names_the_key_it_resembles(tmp_path, where, key, nearest):
    """A typo gets the nearest known keys first, wherever the key was written; the full list
    still follows."""
    with pytest.raises(SpecError) as caught:
        if where == "--set":
            load_spec(None, [f"{key}=1"])
        elif where == "config":
            config = tmp_path / "run.toml"
            config.write_text(f"{key} = 1\n", encoding="utf-8")
            load_spec(config)
        else:
            RunSpec().replace(**{key: 1})
    message = str(caught.value)
    assert f"{key}: unknown key; {nearest} known keys: dataset, " in message


def test_a_key_like_no_other_gets_only_the_list():
    with pytest.raises(SpecError) as caught:
        load_spec(None, ["colour=red"])
    assert "did you mean" not in str(caught.value)
    assert "colour: unknown key; known keys: dataset, " in str(caught.value)
