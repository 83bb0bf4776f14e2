from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from stransfer import config
from stransfer import console
from stransfer import train as training
from stransfer.engines import ENGINES
from stransfer.errors import ConfigError

from conftest import REPO


CONFIG_FILES = {f"{name}.toml": spec.config_type for name, spec in ENGINES.items()} | {
    f"train-{kind}.toml": spec.config_type for kind, spec in training.TRAINERS.items()}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_shipped_toml_states_the_built_in_defaults(name):
    """configs/*.toml document the defaults; they must never drift from the dataclasses."""
    config_type = CONFIG_FILES[name]
    path = REPO / "configs" / name
    assert config.build(config_type, path) == config_type()
    # TOML has no None: a setting unset by default (it follows another) is stated in a comment
    stated = {k for k, v in config.as_dict(config_type()).items() if v is not None}
    assert set(tomllib.loads(path.read_text())) == stated


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_toml_then_flags_override_defaults(tmp_path):
    cfg_type = ENGINES["gatys"].config_type
    path = write(tmp_path, 'style_weight = 7\nstyle_layers = ["relu1_1", "relu2_1"]\n')
    cfg = config.build(cfg_type, path, {"style_weight": 2.5, "iterations": None})
    assert cfg.style_weight == 2.5  # the flag wins over the file
    assert cfg.style_layers == ("relu1_1", "relu2_1")
    assert cfg.iterations == cfg_type().iterations  # None = flag not given
    assert config.build(cfg_type, None, {"iterations": "150,80,40"}).iterations == (150, 80, 40)
    assert config.build(cfg_type, None, {"content_layers": "relu2_2, relu3_3"}).content_layers == (
        "relu2_2", "relu3_3")


@pytest.mark.parametrize("text,pattern", [
    ("styel_weight = 3\n", r"c\.toml: unknown key 'styel_weight'"),
    ('iterations = "many"\n', r"c\.toml: 'iterations' must be a list of integers"),
    ("iterations = 2.5\n", r"'iterations' must be a list of integers"),
    ("save_every = 2.5\n", r"'save_every' must be an integer"),
    ("scales = [0.5, 1.5]\n", r"'scales' must be <= 1.0"),
    ("style_weight = true\n", r"'style_weight' must be a number"),
    ("style_weight = -1\n", r"c\.toml: 'style_weight' must be >= 0"),
    ("iterations = 0\n", r"'iterations' must be >= 1"),
    ('optimizer = "sgd"\n', r"'optimizer' must be one of lbfgs, adam"),
    ("style_layers = 3\n", r"'style_layers' must be a list of strings"),
    ("this is = not toml", r"not valid TOML"),
])
def test_bad_toml_names_key_and_file(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        config.build(ENGINES["gatys"].config_type, write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_a_bad_argument_names_the_setting_and_the_cli_names_the_flag():
    with pytest.raises(ConfigError, match=r"^'tv_weight' must be >= 0") as raised:
        config.build(ENGINES["gatys"].config_type, None, {"tv_weight": -0.5})
    assert raised.value.key == "tv_weight"
    assert console.error_line(raised.value).startswith("--tv-weight: 'tv_weight' must be >= 0")


def test_the_cli_writes_each_setting_a_message_names_as_its_flag():
    assert console.as_flags("`style_blend` has 3 weights; `method` adain needs `style` FILE") == (
        "--style-blend has 3 weights; -m adain needs -s FILE")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        config.build(ENGINES["gatys"].config_type, tmp_path / "nope.toml")


@pytest.mark.parametrize("key,value,pattern", [
    ("style_weight", float("nan"), "'style_weight' must be a finite number"),
    ("tv_weight", float("-inf"), "'tv_weight' must be a finite number"),
    ("scales", [0.5, float("inf")], "'scales' must be a finite number"),
    ("style_layers", [], "'style_layers' needs at least one value"),
    ("iterations", 10**30, "'iterations' must be <= 100000"),
])
def test_values_must_be_finite_non_empty_and_bounded(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config.build(ENGINES["gatys"].config_type, None, {key: value})


def test_a_flag_outside_any_config_meets_the_same_rules():
    assert config.check("threads", 4, ge=1, le=8) == 4
    with pytest.raises(ConfigError, match=r"^'style_scale' must be a finite number \(got nan\)$"):
        config.check("style_scale", float("nan"), gt=0.0)
    with pytest.raises(ConfigError, match=r"^\$STRANSFER_NET_TIMEOUT: 'stransfer_net_timeout' must be > 0"):
        config.check("$STRANSFER_NET_TIMEOUT", -1.0, gt=0.0)
