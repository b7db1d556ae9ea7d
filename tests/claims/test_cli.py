"""`thermolens claims` on the command line: the fixed ids, the plan, bad input -> exit 2, and a real
end-to-end report on the cheapest claim."""

import json
import math

import pytest
from typer.testing import CliRunner

from thermolens.cli import app
from thermolens.claims.registry import CLAIM_IDS, all_claims
from thermolens.claims.run import ClaimsConfig, make_plan

runner = CliRunner()

# the ids the issue fixes, in its order (scripts and --only rely on them)
ISSUE_IDS = [
    "theorem1", "theorem2", "theorem3", "detect-critical-point", "critical-training", "kim-canonical-ensemble",
    "kim-precursor", "mr-doi-onsager", "mr-noisy-transformer", "mr-hegselmann-krause", "mr-rates",
    "aubin-specialization", "aubin-gap",
]


def test_list_gives_every_fixed_id_with_source_and_statement():
    res = runner.invoke(app, ["claims", "list", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)["claims"]
    assert [c["id"] for c in listed] == ISSUE_IDS == list(CLAIM_IDS)
    assert all(c["source"] and len(c["statement"]) > 20 for c in listed)


def test_every_claim_has_pieces_with_estimates_and_a_command_under_both_presets():
    for preset in ("quick", "full"):
        plan = make_plan(ClaimsConfig(preset=preset))
        assert len(plan.claims) == 13
        assert all(p.est_s > 0 and p.est_gib > 0 for p in plan.pieces)
        for claim in all_claims().values():
            assert claim.command(preset).startswith("thermolens"), claim.id
    quick, full = make_plan(ClaimsConfig(preset="quick")), make_plan(ClaimsConfig(preset="full"))
    assert quick.est_s < 30 * 60 < full.est_s  # the quick preset is planned inside its budget


def test_unknown_claim_id_lists_the_valid_ones(tmp_path):
    res = runner.invoke(app, ["claims", "--only", "theorem1,theorem9", "--out", str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 2
    assert "theorem9" in res.output and "kim-precursor" in res.output
    assert not (tmp_path / "c").exists()


def test_bad_preset_executor_and_out(tmp_path):
    assert runner.invoke(app, ["claims", "--preset", "huge", "--out", str(tmp_path / "a")]).exit_code == 2
    assert runner.invoke(app, ["claims", "--executor", "mpi", "--out", str(tmp_path / "b")]).exit_code == 2
    (tmp_path / "file").write_text("x")
    res = runner.invoke(app, ["claims", "--only", "mr-doi-onsager", "--out", str(tmp_path / "file")])
    assert res.exit_code == 2 and "is a file" in res.output


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    res = runner.invoke(app, ["claims", "--preset", "full", "--dry-run", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "13 claims" in res.output and "estimated" in res.output
    assert not (tmp_path / "c").exists()


def _end_to_end(tmp_path, executor):
    out = tmp_path / "c"
    res = runner.invoke(app, ["claims", "--only", "mr-doi-onsager", "--executor", executor, "--out", str(out),
                              "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    row = data["claims"][0]
    # the keys the issue fixes for claims.json and --json
    assert {"id", "source", "statement", "verdict", "effect", "ci", "null", "sensitivity", "n_tests", "command",
            "run_dir"} <= set(row)
    assert row["id"] == "mr-doi-onsager" and row["verdict"] == "supported"
    assert row["effect"] == pytest.approx(3 * math.pi / 4, rel=1e-9)  # K_# of Doi-Onsager (Mun & Rosenzweig)
    assert json.loads((out / "claims.json").read_text())["claims"][0]["verdict"] == "supported"
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    page = (out / "report.html").read_text()
    assert "mr-doi-onsager" in page and "data:image/png;base64" in page


def test_one_claim_end_to_end_and_a_rerun_reuses_everything(tmp_path):
    _end_to_end(tmp_path, "inline")
    res = runner.invoke(app, ["claims", "--only", "mr-doi-onsager", "--out", str(tmp_path / "c"), "--dry-run"])
    assert res.exit_code == 0 and "1 finished earlier" in res.output


@pytest.mark.slow
def test_one_claim_end_to_end_on_ray(tmp_path):
    _end_to_end(tmp_path, "ray")
