"""MSAIC-Net and the baselines: built from the packaged configs, shapes, lead-wise stem and attention,
configs that round-trip through JSON (as the registry stores them)."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
import torch

from msaic_model.model.blocks import LeadAttention, parameter_count
from msaic_model.model.config import ModelConfig, available_configs, load_config, with_overrides
from msaic_model.model.net import MsaicNet, build_model

torch.set_num_threads(2)


def test_packaged_configs() -> None:
    assert {"msaic", "resnet1d", "inception1d"} <= set(available_configs())
    assert load_config("msaic").data.fs == 100
    assert load_config("msaic500").data.fs == 500


@pytest.mark.parametrize("name", ["msaic", "msaic500", "resnet1d", "inception1d"])
@pytest.mark.parametrize("seconds", [2.5, 10.0, 7.31])
def test_forward_shapes(name: str, seconds: float) -> None:
    config = load_config(name)
    model = build_model(config).eval()
    x = torch.randn(3, 12, round(seconds * config.data.fs))
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (3,)
    assert torch.isfinite(out.logits).all()
    if config.architecture == "msaic":
        assert out.projection.shape == (3, config.net.projection_dim)
        assert out.lead_weights.shape == (3, 12)
        assert ((out.lead_weights > 0) & (out.lead_weights < 1)).all()
    else:
        assert out.projection is None and out.lead_weights is None


def test_lead_stem_keeps_leads_apart() -> None:
    """Channels of the stem's k-th group depend on lead k alone, so lead attention weighs leads."""
    model = build_model(load_config("msaic"))
    per_lead = model.lead_attention.per_lead
    x = torch.randn(2, 12, 250, requires_grad=True)
    stem = model.lead_stem(x)
    for lead in (0, 5, 11):
        (grad,) = torch.autograd.grad(
            stem[:, lead * per_lead : (lead + 1) * per_lead].sum(), x, retain_graph=True
        )
        touched = grad.abs().sum(dim=(0, 2)) > 0
        assert touched.nonzero().flatten().tolist() == [lead]


def test_lead_attention_scales_each_lead_by_its_gate() -> None:
    torch.manual_seed(0)  # (unseeded, all four hidden units came out dead now and then: one gate for all)
    attention = LeadAttention(leads=12, per_lead=3, hidden=4)
    x = torch.randn(2, 36, 50)
    out, weights = attention(x)
    expected = x.view(2, 12, 3, 50) * weights[:, :, None, None]
    torch.testing.assert_close(out, expected.view(2, 36, 50))
    # the gates come from what each record's leads hold: another record, or one lead louder, moves them
    assert ((weights > 0) & (weights < 1)).all() and not torch.allclose(weights[0], weights[1])
    louder = x.clone()
    louder[:, 4 * 3 : 5 * 3] *= 10
    assert not torch.allclose(attention(louder)[1], weights)


def test_widths_dilations_and_depth_come_from_config() -> None:
    config = with_overrides(
        load_config("msaic"),
        {
            "net.blocks": [
                {"width": 24, "branch_width": 4, "dilations": [1, 3, 9], "kernel_size": 5, "pool": 2}
            ],
            "net.channel_attention": "eca",
        },
    )
    model = build_model(config)
    assert isinstance(model, MsaicNet)
    assert len(model.blocks) == 1
    assert [b[0].dilation[0] for b in model.blocks[0].branches] == [1, 3, 9]
    assert model.classifier[-1].in_features == 2 * 24
    assert parameter_count(model) < parameter_count(build_model(load_config("msaic")))


def test_config_round_trip_rebuilds_the_same_network(tmp_path: Path) -> None:
    config = load_config("msaic")
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())
    again = load_config(path)
    assert again == config
    model = build_model(config)
    twin = build_model(again)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 12, 250)
    torch.testing.assert_close(model.eval()(x).logits, twin.eval()(x).logits)


def test_bad_configs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="packaged"):
        load_config("no-such-model")
    with pytest.raises(pydantic.ValidationError):
        with_overrides(
            load_config("msaic"), {"net.blocks": [{"width": 8, "branch_width": 4, "dilations": [0]}]}
        )
    with pytest.raises(KeyError):
        with_overrides(load_config("msaic"), {"train.epochz": 3})
    data = json.loads(load_config("resnet1d").model_dump_json())
    data["net"]["architecture"] = "transformer"
    with pytest.raises(pydantic.ValidationError):
        ModelConfig.model_validate(data)


def test_fused_network_adds_the_feature_logit() -> None:
    """`msaic_fused`: the feature head's logit is added to the waveform classifier's; missing
    features read as the training median (0 once standardized); features are required."""
    config = load_config("msaic_fused")
    model = build_model(config).eval()
    n_features = len(config.feature_columns)
    assert n_features == model.features.center.numel() > 132  # measurements and criteria
    training = torch.randn(50, n_features) * 3 + 1
    training[::5, 0] = float("nan")
    model.features.set_normalization(training)
    assert torch.isfinite(model.features.center).all() and (model.features.scale > 0).all()
    x, f = torch.randn(4, 12, 110), training[:4].clone()
    with torch.no_grad():
        fused = model(x, f).logits
        waveform_only = model.classifier(
            model.pool(model.blocks(model.mix(model.lead_attention(model.lead_stem(x))[0])))
        ).squeeze(-1)
        torch.testing.assert_close(fused - waveform_only, model.features(f))
        nan_row = torch.full((1, n_features), float("nan"))
        torch.testing.assert_close(model.features(nan_row), model.features(model.features.center[None]))
    with pytest.raises(ValueError, match="needs features"):
        model(x)
    with pytest.raises(ValueError, match="takes none"):
        build_model(load_config("msaic")).eval()(x, f)
