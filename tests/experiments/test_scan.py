"""The scan: consistency between modes, invariants of the tables, the run directory and the CLI contract."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from thermolens.cli import app
from thermolens.experiments.scan.heads import ScanConfig, ScanResult, scan

TEXT = ("The quick brown fox jumps over the lazy dog while the cat sleeps by the fire. " * 40).strip()
TEMPS = tuple(float(t) for t in np.geomspace(1e-3, 10.0, 17))  # random tiny weights: logit std ~ 0.01




@pytest.fixture(scope="module")
def quenched(tiny):
    cfg = ScanConfig(temperatures=TEMPS, seq_len=32, max_tokens=400, batch_size=4, n_boot=50, null_sequences=4)
    return scan(tiny[2], [TEXT], config=cfg)


def test_tables_have_every_head_and_temperature(quenched):
    assert len(quenched.heads) == 2 * 4
    assert len(quenched.curves) == 2 * 4 * len(TEMPS)
    assert (quenched.curves["C"] >= 0).all()
    # F = U - T S per row, hence also for row averages (DESIGN.md §3).
    c = quenched.curves
    np.testing.assert_allclose(c["F"], c["U"] - c["T"] * c["S"], rtol=1e-9, atol=1e-9)
    # S is at most ln n and approaches it at high T.
    assert (c["S"] <= np.log(c["n_keys"]) + 1e-9).all()


def test_t_star_lies_in_its_ci_and_grid(quenched):
    h = quenched.heads
    interior = ~h["at_edge"]
    assert interior.any()
    assert ((h.loc[interior, "T_star"] >= min(TEMPS)) & (h.loc[interior, "T_star"] <= max(TEMPS))).all()
    assert (h["T_star_lo"] <= h["T_star_hi"]).all()
    # Kim's convention: T_K = T * sqrt(d_k) (arXiv:2602.08216), d_k = 32 / 4 = 8.
    np.testing.assert_allclose(h["T_star_kim"], h["T_star"] * np.sqrt(8))


def test_propagated_layer0_equals_quenched(tiny):
    """Heating every layer leaves layer 0's own logits unchanged, so its C(T) must equal the quenched one."""
    temps = TEMPS[::4]
    cfg = ScanConfig(temperatures=temps, seq_len=32, max_tokens=200, batch_size=4, n_boot=0, null_sequences=4,
                     mode="propagated")
    prop = scan(tiny[2], [TEXT], config=cfg)
    ref = scan(tiny[2], [TEXT], config=dataclasses.replace(cfg, mode="quenched"))
    a = ref.curves[ref.curves["layer"] == 0].sort_values(["head", "T"])
    b = prop.curves[prop.curves["layer"] == 0].sort_values(["head", "T"])
    np.testing.assert_allclose(a["C"].to_numpy(), b["C"].to_numpy(), rtol=1e-6, atol=1e-9)
    # Downstream layers feel the temperature: at low T layer 0 sharpens, and layer 1 sees other inputs.
    a1 = ref.curves[(ref.curves["layer"] == 1) & (ref.curves["T"] == temps[0])]["C"].to_numpy()
    b1 = prop.curves[(prop.curves["layer"] == 1) & (prop.curves["T"] == temps[0])]["C"].to_numpy()
    assert not np.allclose(a1, b1, rtol=1e-3)
    assert prop.losses is not None and len(prop.losses) == len(temps) and np.isfinite(prop.losses["loss"]).all()


def test_save_load_roundtrip(tmp_path, quenched):
    quenched.save(tmp_path)
    back = ScanResult.load(tmp_path)
    assert back.config == quenched.config
    np.testing.assert_allclose(back.heads["T_star"], quenched.heads["T_star"])


def _run(args):
    return CliRunner().invoke(app, args)


def test_cli_scan_json(tmp_path, tiny_dir):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    res = _run(["scan", "--model", str(tiny_dir), "--text", str(text), "--max-tokens", "400", "--seq-len", "32",
                "--temperatures", "0.1:5:8", "--bootstrap", "20", "--out", str(out), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["n_heads"] == 8 and len(payload["heads"]) == 8
    for name in ("heads.parquet", "curves.parquet", "manifest.json", "report.html", "heat_capacity.png",
                 "T_star_heatmap.png", "entropy.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    # A previous scan may be overwritten without --overwrite.
    res = _run(["scan", "--model", str(tiny_dir), "--text", str(text), "--max-tokens", "200", "--seq-len", "32",
                "--temperatures", "0.5,1,2", "--bootstrap", "0", "--out", str(out), "--quiet", "--no-report"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--temperatures", ""], "empty"),
        (["--temperatures", "-1,1"], "positive"),
        (["--temperatures", "2,1"], "ascending"),
        (["--max-tokens", "0"], "max_tokens"),
        (["--bootstrap-blocks", "1"], "bootstrap_blocks must be at least 2"),
        (["--model", "/nonexistent/model/dir"], "nonexistent"),
        (["--text", "/nonexistent/corpus.txt"], "corpus.txt"),
    ],
)
def test_cli_bad_input(tmp_path, tiny_dir, extra, message):
    args = ["scan", "--model", str(tiny_dir), "--out", str(tmp_path / "run"), "--quiet", *extra]
    res = _run(args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_cli_refuses_foreign_directory(tmp_path, tiny_dir):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    res = _run(["scan", "--model", str(tiny_dir), "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary\x00"])
def test_cli_rejects_empty_or_binary_text(tmp_path, tiny_dir, content):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    res = _run(["scan", "--model", str(tiny_dir), "--text", str(bad), "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2 and "bad.txt" in res.output


def test_nonfinite_logits_name_layer_and_head(tiny):
    from thermolens.models import from_pretrained_model

    import copy

    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]  # a copy: the weights are broken below
    with torch.no_grad():
        model.bert.encoder.layer[1].attention.self.query.weight[8:16].fill_(float("nan"))  # head 1 of layer 1
    loaded = from_pretrained_model(model, tokenizer, name="broken")
    with pytest.raises(ValueError, match=r"layer 1.*head 1"):
        scan(loaded, [TEXT], config=ScanConfig(temperatures=TEMPS, seq_len=32, max_tokens=200, n_boot=0))


def test_detect_critical_point_reports_every_head_with_its_reason(tiny, quenched):
    from thermolens.experiments.scan.critical import detect_critical_point

    table = detect_critical_point(quenched, tiny[2], [TEXT], n_sequences=4, max_samples=800, n_boot=10)
    assert len(table) == len(quenched.heads)
    np.testing.assert_allclose(table["T_star"], quenched.heads["T_star"])
    fitted = table["n_tail"] > 0
    # A head is called a power law only with a bootstrap p above 0.1 (Clauset et al. 2009, §4.1).
    assert (table.loc[table["is_power_law"], "gof_p"] > 0.1).all()
    assert table.loc[fitted, "alpha"].gt(1).all()
    assert table["reason"].str.len().gt(0).all()
    with pytest.raises(ValueError, match="p_threshold"):
        detect_critical_point(quenched, tiny[2], [TEXT], p_threshold=1.5)


def test_cli_ctrl_c_leaves_no_tables(tmp_path, tiny_dir, monkeypatch):
    """Ctrl-C mid-scan: one line, exit 2, manifest says interrupted, no half-written table."""
    import thermolens.experiments.scan.heads as scan_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scan_module, "scan", interrupted)
    out = tmp_path / "run"
    res = _run(["scan", "--model", str(tiny_dir), "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "interrupted" in res.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_bootstrap_blocks_keep_memory_flat_without_changing_the_point_estimates(tiny):
    """Folding sequences into a few bootstrap blocks changes only the intervals; the batch size changes nothing."""
    cfg = ScanConfig(temperatures=TEMPS[::2], seq_len=32, max_tokens=640, batch_size=4, n_boot=50, null_sequences=4)
    per_seq = scan(tiny[2], [TEXT], config=cfg)
    blocked = scan(tiny[2], [TEXT], config=dataclasses.replace(cfg, bootstrap_blocks=6))
    rebatched = scan(tiny[2], [TEXT], config=dataclasses.replace(cfg, bootstrap_blocks=6, batch_size=7))
    assert per_seq.n_sequences == 20
    for col in ("F", "U", "S", "C", "xi", "chi"):
        np.testing.assert_allclose(blocked.curves[col], per_seq.curves[col], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(rebatched.curves[col], blocked.curves[col], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blocked.heads["T_star"], per_seq.heads["T_star"], rtol=1e-12)
    for col in ("T_star", "T_star_lo", "T_star_hi", "T_star_null_gauss", "T_star_null_shuffled"):
        np.testing.assert_allclose(rebatched.heads[col], blocked.heads[col], rtol=1e-9)
    # 20 sequences in 6 blocks of 4: resampling 6 units, not 20, so the intervals differ.
    assert not np.allclose(blocked.heads["T_star_lo"], per_seq.heads["T_star_lo"])
    with pytest.raises(ValueError, match="bootstrap_blocks must be at least 2"):
        ScanConfig(bootstrap_blocks=1)
