"""CriticalOptimizer as a torch optimizer: state_dict round trip, schedulers, param groups, the
grokking loop with it (resume included), the optimizer registry."""

import io

import numpy as np
import pytest
import torch

from thermolens.optim import OPTIMIZERS, CriticalOptimizer, make_optimizer

SETTINGS = dict(lr=3e-3, preconditioner="kfac", temperature_control="track-critical", stats_every=2,
                inv_every=3, temperature_kwargs=dict(every=2))


def _train(model, opt, toks, loss_of, n):
    for _ in range(n):
        opt.zero_grad()
        loss_of(model, toks).backward()
        opt.step()


def test_state_dict_round_trip_continues_exactly(make_lm, make_tokens, loss_of):
    toks = make_tokens()
    ref = make_lm()
    ref_opt = CriticalOptimizer(ref, **SETTINGS)
    _train(ref, ref_opt, toks, loss_of, 8)

    first = make_lm()
    opt = CriticalOptimizer(first, **SETTINGS)
    _train(first, opt, toks, loss_of, 4)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # what checkpoints use: no pickled objects
    second = make_lm(seed=5)
    opt2 = CriticalOptimizer(second, **SETTINGS)
    second.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    _train(second, opt2, toks, loss_of, 4)
    for (name, a), b in zip(ref.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert opt2.kfac.factors.keys() == ref_opt.kfac.factors.keys()
    assert opt2.controller.history == ref_opt.controller.history


def test_lr_scheduler_drives_the_step(make_lm, make_tokens, loss_of):
    model, toks = make_lm(), make_tokens()
    opt = CriticalOptimizer(model, lr=1e-2, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 if step == 0 else 0.0)
    _train(model, opt, toks, loss_of, 1)
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, opt, toks, loss_of, 1)  # lr 0: neither the update nor the weight decay moves anything
    for name, value in model.state_dict().items():
        assert torch.equal(value, frozen[name]), name


def test_kfac_finds_the_attention_and_mlp_matrices_of_the_hooked_model(make_lm, make_tokens, loss_of):
    model, toks = make_lm(), make_tokens()
    opt = CriticalOptimizer(model, lr=1e-3)
    _train(model, opt, toks, loss_of, 1)
    labels = {key.label for key in opt.kfac.factors}
    # W_QKV splits into a query block and a key-value block (different inputs); W_E, W_pos are lookups
    assert {"blocks.0.W_QKV[0:16]", "blocks.0.W_QKV[16:48]", "blocks.0.W_O[0:16]", "blocks.0.W_in[0:32]",
            "blocks.1.W_out[0:16]", "W_U[0:11]"} <= labels
    assert not any(label.startswith(("W_E", "W_pos")) for label in labels)


@pytest.mark.parametrize("memory_factor", [0.0, 0.5, 2.0])
def test_state_stays_within_the_memory_budget(make_lm, make_tokens, loss_of, memory_factor):
    model, toks = make_lm(), make_tokens()
    opt = CriticalOptimizer(model, lr=1e-3, memory_factor=memory_factor)
    _train(model, opt, toks, loss_of, 2)
    n_params = sum(p.numel() for p in model.parameters())
    kfac = opt.kfac.n_state_elements()
    full = sum(t.dim() == 2 for slot in opt.kfac.factors.values() for t in slot.values())
    # moments 2 P (as AdamW) plus K-FAC numbers within memory_factor x P, beyond the diagonals
    # every side keeps anyway (2 d each)
    diagonals = sum(2 * t.shape[0] for slot in opt.kfac.factors.values() for t in slot.values())
    assert kfac <= memory_factor * n_params + diagonals
    assert opt.state_elements() == 2 * n_params + kfac
    assert (full == 0) == (memory_factor == 0.0)


def test_registry_builds_every_optimizer(make_lm, make_tokens, loss_of):
    pytest.importorskip("pytorch_optimizer")
    toks = make_tokens()
    for name in OPTIMIZERS:
        model = make_lm()
        opt = make_optimizer(name, model, lr=1e-3, weight_decay=0.1)
        before = loss_of(model, toks).item()
        _train(model, opt, toks, loss_of, 5)
        assert loss_of(model, toks).item() < before, name
    with pytest.raises(ValueError, match="unknown"):
        make_optimizer("lion", make_lm(), lr=1e-3, weight_decay=0.0)


def test_grokking_loop_with_the_critical_optimizer_resumes_exactly(tmp_path):
    from thermolens.experiments.grokking import train as grokking
    from thermolens.experiments.grokking.train import GrokConfig, train

    tiny = dict(p=11, train_fraction=0.5, max_steps=30, every=5, sweep_every=0, checkpoint_every=10,
                optimizer="critical", init="critical", sharpness_every=10,
                optimizer_kwargs={"stats_every": 3, "inv_every": 7, "temperature_kwargs": {"every": 5}})
    full = train(GrokConfig(**tiny))
    h = full.history
    assert {"sharpness", "sharpness_precond", "gd_threshold", "adam_threshold"} <= set(h.columns)
    read = h[h["step"] % 10 == 0]
    assert np.isfinite(read["sharpness"]).all() and np.isfinite(read["sharpness_precond"].iloc[1:]).all()
    assert full.summary()["optimizer"] == "critical"

    def interrupt(step, total, reading):
        if step == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(GrokConfig(**tiny), run_dir=tmp_path, progress=interrupt)
    assert torch.load(tmp_path / grokking.CHECKPOINT, weights_only=True)["step"] == 20
    resumed = train(GrokConfig(**tiny), run_dir=tmp_path)
    np.testing.assert_array_equal(resumed.history.to_numpy(float), h.to_numpy(float))
