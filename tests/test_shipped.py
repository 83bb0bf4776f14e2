"""Every model in weights/ loads by its NAME, carries its identity, fits its size budget and runs."""

from __future__ import annotations

import pytest
import torch

from stransfer import weights
from stransfer.weights.models import SHIPPED_MODELS
from stransfer.train import lineage_of
from stransfer.engines.adain import load_decoder
from stransfer.engines.johnson import load_transformer
from stransfer.engines import texturenet

from conftest import cli

SHIPPED = sorted(SHIPPED_MODELS.glob("*.pth"))
LIMITS_MB = {"johnson": 10, "adain": 20, "texturenet": 10}


def test_there_are_shipped_models():
    assert SHIPPED, "weights/ holds no model"


def test_models_command_lists_every_shipped_model(capsys, isolated_home):
    code, out, _ = cli(capsys, "models")
    assert code == 0
    lines = {line.split(":")[0]: line for line in out.splitlines() if ":" in line}
    for path in SHIPPED:
        engine = weights.load_model(path, None)["engine"]
        assert lines[path.stem].startswith(f"{path.stem}: {engine}, ")
        assert ("any style (-s)" in lines[path.stem]) == (engine == "adain")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_identity_size_and_output(path):
    payload = weights.load_model(path, None)
    engine = payload["engine"]
    assert path.stat().st_size < LIMITS_MB[engine] * 1e6
    assert weights.find_model(path.stem) == path
    for key in ("backbone", "train_config", "steps", "record"):
        assert key in payload, key
    assert payload["record"]["final_losses"]
    # A model trained in stages (--init) counts every stage's steps; each stage ran the steps its config asked.
    stages = lineage_of(payload)
    assert payload["steps"] == sum(stage["steps"] for stage in stages)
    assert all(stage["train_config"]["steps"] == stage["steps"] for stage in stages)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        if engine == "johnson":
            net, _ = load_transformer(path)
            # A model holding several styles runs one of them (its last), picked by a one-hot row.
            out = net(x) if net.styles == 1 else net(x, torch.eye(net.styles)[-1])
        elif engine == texturenet.ENGINE:
            generator, _ = texturenet.load_generator(path)
            out = generator(texturenet.noise(generator.arch, 40, 56, [0]), torch.eye(generator.textures)[-1:])
        else:
            decoder, _ = load_decoder(path)
            out = decoder(torch.rand(1, 512, 5, 7))
    assert out.shape == (1, 3, 40, 56) and torch.isfinite(out).all()


@pytest.mark.parametrize("path", [p for p in SHIPPED if weights.load_model(p, None)["engine"] == "johnson"],
                         ids=lambda p: p.stem)
def test_shipped_johnson_exports_to_matching_torchscript(path, tmp_path):
    import warnings

    from stransfer.export import export

    net, _ = load_transformer(path)
    if net.styles > 1:  # exported with one style baked in, as `stransfer export MODEL -s NAME` does
        net = net.baked(torch.eye(net.styles)[-1])
    export(net, tmp_path / "m.pt", "torchscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(tmp_path / "m.pt")
    x = torch.rand(1, 3, 96, 136)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-4, rtol=0)
