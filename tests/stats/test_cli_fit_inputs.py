"""`thermolens fit powerlaw|branching` on binary inputs: .npy (1-D, columns of 2-D, ints with --discrete) and
.parquet give the same numbers as the library on the same values; wrong dtype, wrong shape, empty files and
non-finite or missing values exit 2 with one line that says what is wrong and where."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from thermolens import stats
from thermolens.cli import app

runner = CliRunner()


def _invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def _json(args):
    res = _invoke([*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _bad(args, *messages):
    res = _invoke(args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    for message in messages:
        assert message in res.output, res.output
    return res.output


@pytest.fixture()
def sizes():
    return stats.sample_power_law(2.4, 1.0, 2000, seed=1)


def test_npy_1d_matches_library_and_text(tmp_path, sizes):
    np.save(tmp_path / "sizes.npy", sizes)
    (tmp_path / "sizes.txt").write_text("\n".join(repr(float(v)) for v in sizes) + "\n")
    fit = stats.fit_power_law(sizes)
    data = _json(["fit", "powerlaw", tmp_path / "sizes.npy"])
    assert data["alpha"] == fit.alpha and data["xmin"] == fit.xmin and data["n"] == sizes.size
    assert data == _json(["fit", "powerlaw", tmp_path / "sizes.txt"])


def test_npy_float32_is_fitted_as_its_values(tmp_path, sizes):
    np.save(tmp_path / "sizes.npy", sizes.astype(np.float32))
    fit = stats.fit_power_law(sizes.astype(np.float32).astype(np.float64))
    assert _json(["fit", "powerlaw", tmp_path / "sizes.npy"])["alpha"] == fit.alpha


def test_npy_2d_needs_a_column_index(tmp_path, sizes):
    table = np.column_stack([np.arange(sizes.size), sizes, sizes * 2])
    path = tmp_path / "table.npy"
    np.save(path, table)
    data = _json(["fit", "powerlaw", path, "--column", 1])
    assert data["alpha"] == stats.fit_power_law(sizes).alpha
    _bad(["fit", "powerlaw", path], "2-D array of shape (2000, 3)", "--column", "0..2")
    _bad(["fit", "powerlaw", path, "--column", 3], "not a column", "0..2")
    _bad(["fit", "powerlaw", path, "--column", "size"], "0-based index")


def test_npy_of_ints_with_discrete(tmp_path):
    counts = stats.sample_power_law(2.2, 3, 3000, discrete=True, seed=2).astype(np.int64)
    np.save(tmp_path / "counts.npy", counts)
    data = _json(["fit", "powerlaw", tmp_path / "counts.npy", "--discrete"])
    fit = stats.fit_power_law(counts, discrete=True)
    assert (data["alpha"], data["xmin"], data["n_tail"], data["discrete"]) == (
        fit.alpha,
        fit.xmin,
        fit.n_tail,
        True,
    )


@pytest.mark.parametrize(
    "array, message",
    [
        (np.arange(1, 200) + 0.5j, "dtype complex128, not real numbers"),
        (np.arange(200) % 2 == 0, "dtype bool, not real numbers"),
        (np.array([str(i) for i in range(1, 200)]), "not real numbers"),
        (np.ones((4, 5, 6)), "3-D array of shape (4, 5, 6)"),
        (np.float64(3.0), "0-D array of shape ()"),
        (np.empty(0), "holds no numbers"),
        (np.empty((0, 2)), "holds no numbers"),
    ],
)
def test_npy_wrong_dtype_shape_or_empty(tmp_path, array, message):
    path = tmp_path / "x.npy"
    np.save(path, array)
    extra = ["--column", 0] if np.ndim(array) == 2 else []
    _bad(["fit", "powerlaw", path, *extra], message)


def test_npy_objects_and_non_npy_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1.0, "a", None], dtype=object), allow_pickle=True)
    _bad(["fit", "powerlaw", tmp_path / "obj.npy"], "dtype object", "save a numeric array")
    (tmp_path / "text.npy").write_text("1\n2\n3\n")
    _bad(["fit", "powerlaw", tmp_path / "text.npy"], "not a readable .npy file")
    np.save(tmp_path / "one.npy", np.arange(1.0, 100.0))
    _bad(["fit", "powerlaw", tmp_path / "one.npy", "--column", 0], "1-D array", "leave it out")


def test_nonfinite_values_are_counted_and_located(tmp_path, sizes):
    x = sizes.copy()
    x[[17, 400, 401]] = [np.nan, np.inf, -np.inf]
    np.save(tmp_path / "x.npy", x)
    _bad(["fit", "powerlaw", tmp_path / "x.npy"], "3 NaN or infinite values (first at row 17, 0-based)")
    np.save(tmp_path / "t.npy", np.column_stack([sizes, x]))
    _bad(["fit", "powerlaw", tmp_path / "t.npy", "--column", 1], "column 1 of", "3 NaN or infinite values")
    assert _invoke(["fit", "powerlaw", tmp_path / "t.npy", "--column", 0, "--json"]).exit_code == 0


def test_parquet_columns(tmp_path, sizes):
    path = tmp_path / "sizes.parquet"
    pq.write_table(pa.table({"name": [f"a{i}" for i in range(sizes.size)], "size": sizes}), path)
    fit = stats.fit_power_law(sizes)
    assert _json(["fit", "powerlaw", path])["alpha"] == fit.alpha  # the only numeric column
    assert _json(["fit", "powerlaw", path, "--column", "size"])["alpha"] == fit.alpha
    assert _json(["fit", "powerlaw", path, "--column", 1])["alpha"] == fit.alpha
    _bad(["fit", "powerlaw", path, "--column", "name"], "column 'name'", "type string", "not real numbers")
    _bad(["fit", "powerlaw", path, "--column", "weight"], "column 'weight' not found", "name, size")
    two = tmp_path / "two.parquet"
    pq.write_table(pa.table({"size": sizes, "duration": np.arange(sizes.size, dtype=np.int32)}), two)
    _bad(["fit", "powerlaw", two], "2 numeric columns (size, duration)", "--column")
    counts = stats.sample_power_law(2.2, 3, 3000, discrete=True, seed=2).astype(np.int64)
    pq.write_table(pa.table({"count": counts}), tmp_path / "counts.parquet")
    data = _json(["fit", "powerlaw", tmp_path / "counts.parquet", "--discrete"])
    assert data["alpha"] == stats.fit_power_law(counts, discrete=True).alpha


def test_parquet_missing_values_and_bad_files(tmp_path):
    values = pa.array([1.5, None, 2.5, None] + [float(v) for v in range(3, 200)])
    pq.write_table(pa.table({"size": values}), tmp_path / "nulls.parquet")
    _bad(["fit", "powerlaw", tmp_path / "nulls.parquet"], "2 missing (null) values (first at row 1, 0-based)")
    pq.write_table(pa.table({"size": pa.array([], type=pa.float64())}), tmp_path / "empty.parquet")
    _bad(["fit", "powerlaw", tmp_path / "empty.parquet"], "holds no numbers")
    pq.write_table(pa.table({"label": ["a", "b"]}), tmp_path / "text.parquet")
    _bad(["fit", "powerlaw", tmp_path / "text.parquet"], "no numeric column")
    (tmp_path / "junk.parquet").write_text("not parquet")
    _bad(["fit", "powerlaw", tmp_path / "junk.parquet"], "not a readable Parquet file")


def test_branching_reads_npy(tmp_path):
    a = stats.simulate_branching(0.95, n_steps=20000, h=5.0, subsampling=0.1, seed=3)[0]
    np.save(tmp_path / "activity.npy", a.astype(np.int64))
    data = _json(["fit", "branching", tmp_path / "activity.npy", "--kmax", 100, "--bootstrap", 5])
    assert data["m"] == pytest.approx(stats.branching_ratio(a, 100, n_boot=0).m)
