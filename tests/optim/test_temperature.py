"""Temperature control: the layer law, T* measured on the fly, scheduled and tracking controls,
critical initialization."""

import json

import numpy as np
import pytest
import torch

from thermolens.optim import CriticalLaw, CriticalOptimizer, TemperatureConfig, load_law, measure_critical_temperatures
from thermolens.optim.init import _scale_head, critical_init


def test_layer_law():
    # T_c(k) = T0 (d/d0)^(-alpha_k): d/d0 = 4, alpha = 0.5, 1 -> 1/2, 1/4 (closed form)
    law = CriticalLaw(T0=1.0, d0=64, alpha=(0.5, 1.0))
    np.testing.assert_allclose(law.temperatures(2, 256), [0.5, 0.25])
    np.testing.assert_allclose(CriticalLaw(2.0, 64, (1.0,)).temperatures(3, 128), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="exponents"):
        law.temperatures(3, 256)
    with pytest.raises(ValueError, match="T0"):
        CriticalLaw(T0=0.0, d0=64, alpha=(1.0,))


def test_law_from_a_scaling_fit_json(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"T0": 1.5, "d0": 32, "alpha": 0.25}))
    assert load_law(path) == CriticalLaw(1.5, 32.0, (0.25,))
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_law(path)
    path.write_text(json.dumps({"T0": 1.0}))
    with pytest.raises(ValueError, match="d0"):
        load_law(path)


def test_scaling_a_head_by_s_moves_its_critical_temperature_by_s_squared(make_lm, make_tokens):
    # logits of a head scale as s^2 when its W_Q, W_K, b_Q, b_K scale by s; C(T) of s^2 l at T equals
    # C of l at T / s^2, so T* -> s^2 T* (exact; the tolerance is the spline refinement on the grid)
    model, toks = make_lm(), make_tokens()[:, :-1]
    before = measure_critical_temperatures(model, toks).T_star
    with torch.no_grad():
        _scale_head(model.blocks[1], 0, 1.5)
    after = measure_critical_temperatures(model, toks).T_star
    assert after[1, 0] == pytest.approx(2.25 * before[1, 0], rel=0.02)
    np.testing.assert_allclose(after[0], before[0])  # the layer below is untouched


def test_scheduled_control_anneals_geometrically_to_the_target(make_lm, make_tokens, loss_of):
    model, toks = make_lm(), make_tokens()
    opt = CriticalOptimizer(model, lr=1e-3, preconditioner="none", temperature_control="scheduled",
                            temperature_kwargs=dict(target=0.25, anneal_steps=4, every=1))
    temps = []
    for _ in range(6):
        opt.zero_grad()
        loss_of(model, toks).backward()
        opt.step()
        temps.append(float(model.head_temperature[0, 0]))
    # T(s) = T0^(1-u) target^u with T0 = 1: 0.25^(1/4), 0.25^(1/2), ... then held at the target
    np.testing.assert_allclose(temps, [0.25 ** 0.25, 0.5, 0.25 ** 0.75, 0.25, 0.25, 0.25], rtol=1e-6)


def test_track_critical_with_rate_one_sets_each_head_to_its_measured_t_star(make_lm, make_tokens, loss_of):
    model, toks = make_lm(), make_tokens()
    opt = CriticalOptimizer(model, lr=1e-3, temperature_control="track-critical",
                            temperature_kwargs=dict(rate=1.0, every=2))
    for _ in range(2):
        opt.zero_grad()
        loss_of(model, toks).backward()
        opt.step()
    log = opt.controller.history
    assert [row["step"] for row in log] == [1] * 4 + [2] * 4  # 2 layers x 2 heads, steps 1 and 2
    for row in log:
        assert row["T"] == pytest.approx(row["T_star"], rel=1e-6)
    # the model runs at the steered temperatures and keeps them in its state dict
    assert torch.equal(model.state_dict()["head_temperature"], model.head_temperature)


def test_bad_temperature_settings():
    with pytest.raises(ValueError, match="positive"):
        TemperatureConfig(mode="scheduled", target=0.0)
    with pytest.raises(ValueError, match="positive"):
        TemperatureConfig(mode="scheduled", target=-1.0)
    with pytest.raises(ValueError, match="unknown"):
        TemperatureConfig(mode="fixed")


def test_critical_init_places_every_head_at_its_operating_temperature(make_lm, make_tokens):
    model, toks = make_lm(), make_tokens()[:, :-1]
    result = critical_init(model, toks)
    assert np.all(np.abs(np.log(result.T_star_before)) > 0.5)  # random init is far from critical
    np.testing.assert_allclose(result.T_star_after, 1.0, rtol=0.06)
    np.testing.assert_allclose(measure_critical_temperatures(model, toks).T_star, result.T_star_after)


def test_state_dict_without_head_temperature_loads_with_the_config_value(make_lm):
    model = make_lm()
    state = {k: v for k, v in model.state_dict().items() if k != "head_temperature"}
    with torch.no_grad():
        model.head_temperature.fill_(3.0)
    model.load_state_dict(state)
    assert torch.all(model.head_temperature == 1.0)


def test_scheduled_control_follows_the_layer_law(make_lm, make_tokens, loss_of):
    # tiny model: d_model 16; law T0 = 1, d0 = 8, alpha = (1, 0.5): targets 2^-1 = 0.5 and 2^-0.5
    model, toks = make_lm(), make_tokens()
    law = CriticalLaw(T0=1.0, d0=8.0, alpha=(1.0, 0.5))
    opt = CriticalOptimizer(model, lr=1e-3, preconditioner="none", temperature_control="scheduled",
                            temperature_kwargs=dict(law=law, anneal_steps=2, every=1))
    for _ in range(2):
        opt.zero_grad()
        loss_of(model, toks).backward()
        opt.step()
    np.testing.assert_allclose(model.head_temperature.numpy(), [[0.5, 0.5], [2 ** -0.5, 2 ** -0.5]], rtol=1e-6)


def test_law_given_as_a_dict_or_a_scaling_fit_file(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"T0": 1.0, "d0": 8, "alpha": [1.0, 0.5]}))
    from_file = TemperatureConfig(mode="scheduled", law=str(path))
    from_dict = TemperatureConfig(mode="scheduled", law={"T0": 1.0, "d0": 8, "alpha": [1.0, 0.5]})
    assert from_file.law == from_dict.law == CriticalLaw(1.0, 8.0, (1.0, 0.5))
    with pytest.raises(ValueError, match="alpha"):
        TemperatureConfig(mode="scheduled", law={"T0": 1.0, "d0": 8})
