"""The command line, run in-process through ``esasrec.cli.main`` (and once as ``python -m esasrec``)."""

import contextlib
import io
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from esasrec.baselines import PopularRecommender
from esasrec.cli import main
from esasrec.data import load_dataset, load_item_titles
from esasrec.metrics import evaluate_recommendations
from esasrec.split import leave_one_out, time_split

METRICS = ("hr@10", "recall@10", "ndcg@10", "mrr@10", "coverage@10")
TINY = ["--epochs", "1", "--n-blocks", "1", "--d-model", "16", "--max-len", "20", "--n-negatives", "16", "--quiet"]


def assert_user_error(err: str, *needles: str) -> None:
    """One `error: ...` paragraph on stderr naming the problem, no traceback."""
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    assert "\n\n" not in err.strip() and len(err.strip().splitlines()) <= 3, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_module_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "esasrec", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("train", "evaluate", "recommend", "bench"):
        assert command in done.stdout


# ------------------------------------------------------------------------------- evaluate
def test_evaluate_popular_loo_matches_the_library(tmp_path, capsys):
    assert main(["evaluate", "--model", "popular", "--dataset", "movielens-small", "--protocol", "loo",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    df = load_dataset("movielens-small")
    train, test, stats = leave_one_out(df)
    recs = PopularRecommender().fit(train).recommend(pd.unique(test["user_id"]), k=10)
    expected = evaluate_recommendations(recs, test, train, k=10)

    assert str(stats) in out  # the split statistics, as the library prints them
    header = next(line for line in out.splitlines() if "hr@10" in line)
    assert header.split()[:5] == list(METRICS)
    row = next(line for line in out.splitlines() if line.startswith("popular "))
    assert f"{expected['hr@10']:.4f}" in row and f"{expected['ndcg@10']:.4f}" in row

    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["dataset"] == "movielens-small"
    assert payload["protocol"] == "loo"
    assert payload["model"] == "popular"
    assert payload["n_test_users"] == test["user_id"].nunique() == stats.test_users
    for m in METRICS:
        assert isinstance(payload["metrics"][m], float)
        assert payload["metrics"][m] == pytest.approx(expected[m], rel=1e-12, abs=0)
    assert payload["metrics"]["hr@10"] > 0
    assert payload["split"] == json.loads(json.dumps(stats.as_dict()))


def write_shop_csv(path):
    """40 customers, 8 purchases each over 100 days, dates as strings; custom column names."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(40):
        days = np.sort(rng.choice(100, size=8, replace=False))
        for d, p in zip(days, rng.choice(15, size=8, replace=False)):
            when = pd.Timestamp("2021-01-01") + pd.Timedelta(days=int(d), hours=int(rng.integers(0, 24)))
            rows.append((f"c{c}", f"p{p}", when.strftime("%Y-%m-%d %H:%M:%S"), 5))
    pd.DataFrame(rows, columns=["customer", "product", "when", "stars"]).to_csv(path, index=False)
    return path


COLS = ["--user-col", "customer", "--item-col", "product", "--time-col", "when"]


@pytest.mark.parametrize("protocol", ["time", "loo"])
def test_evaluate_on_a_users_csv(tmp_path, capsys, protocol):
    csv = write_shop_csv(tmp_path / "shop.csv")
    out_dir = tmp_path / "run"
    assert main(["evaluate", "--dataset", str(csv), *COLS, "--protocol", protocol, "--test-days", "20",
                 "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out

    df = load_dataset(csv, user_col="customer", item_col="product", time_col="when")
    train, test, stats = time_split(df, 20) if protocol == "time" else leave_one_out(df)
    assert str(stats) in out
    assert ("test window" in out) == (protocol == "time")
    payload = json.loads((out_dir / "metrics.json").read_text())
    assert (payload["dataset"], payload["protocol"]) == ("shop", protocol)
    assert payload["n_test_users"] == stats.test_users > 5  # warm test users exist
    recs = PopularRecommender().fit(train).recommend(pd.unique(test["user_id"]), k=10)
    expected = evaluate_recommendations(recs, test, train, k=10)
    for m in METRICS:
        assert payload["metrics"][m] == pytest.approx(expected[m], rel=1e-12, abs=0)


def test_csv_missing_a_column_is_a_clean_error(tmp_path, capsys):
    csv = tmp_path / "shop.csv"
    pd.DataFrame({"customer": ["a", "b"], "product": ["x", "y"]}).to_csv(csv, index=False)
    assert main(["evaluate", "--dataset", str(csv), *COLS, "--out", str(tmp_path / "run")]) == 2
    assert_user_error(capsys.readouterr().err, "'when'", "'customer'")
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_is_a_clean_error(tmp_path, capsys):
    assert main(["evaluate", "--dataset", "no-such-dataset", "--out", str(tmp_path / "run")]) == 2
    assert_user_error(capsys.readouterr().err, "no-such-dataset", "movielens-small")


# ------------------------------------------------------------------- train, recommend, bench
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("train")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["train", "--dataset", "movielens-small", *TINY, "--out", str(out_dir)])
    return rc, out_dir, stdout.getvalue()


@pytest.mark.slow
def test_train_writes_model_and_metrics(trained):
    rc, out_dir, out = trained
    assert rc == 0
    assert (out_dir / "model.pt").stat().st_size > 0
    payload = json.loads((out_dir / "metrics.json").read_text())
    assert payload["preset"] == "esasrec"
    assert payload["epochs_run"] == 1 and payload["best_epoch"] == 1
    assert payload["seconds_per_epoch"] > 0 and payload["train_seconds"] >= payload["seconds_per_epoch"]
    assert isinstance(payload["device"], str) and payload["device"]
    assert set(payload["baselines"]) == {"popular", "popular-7d"}
    for name in ("popular", "popular-7d"):
        assert all(isinstance(payload["baselines"][name][m], float) for m in METRICS)
    assert all(isinstance(payload["metrics"][m], float) for m in METRICS)
    assert payload["model_config"]["d_model"] == 16 and payload["model_config"]["n_blocks"] == 1
    assert "split: loo" in out and "popular-7d" in out


@pytest.mark.slow
def test_recommend_prints_ten_titled_items(trained, capsys):
    _, out_dir, _ = trained
    assert main(["recommend", "--model", str(out_dir / "model.pt"), "--user", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "top-10 for user 1:"
    titles = load_item_titles("movielens-small")
    items = []
    for rank, line in enumerate(lines[1:], 1):
        m = re.fullmatch(r"\s*(\d+)\. (\d+)  (.+)", line)
        assert m, line
        assert int(m[1]) == rank
        assert m[3] == titles[int(m[2])]
        items.append(int(m[2]))
    assert len(items) == 10 == len(set(items))


@pytest.mark.slow
@pytest.mark.parametrize("user, needle", [("99999999", "no history"), ("abc", "integers")])
def test_recommend_unknown_user_is_a_clean_error(trained, capsys, user, needle):
    _, out_dir, _ = trained
    assert main(["recommend", "--model", str(out_dir / "model.pt"), "--user", user]) == 2
    assert_user_error(capsys.readouterr().err, repr(user), needle)


@pytest.mark.slow
def test_evaluate_a_saved_model_reproduces_train_metrics(trained, tmp_path, capsys):
    _, out_dir, _ = trained
    assert main(["evaluate", "--model", str(out_dir / "model.pt"), "--dataset", "movielens-small",
                 "--protocol", "loo", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    trained_metrics = json.loads((out_dir / "metrics.json").read_text())["metrics"]
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["model"] == str(out_dir / "model.pt")
    for m in METRICS:
        assert evaluated["metrics"][m] == pytest.approx(trained_metrics[m], rel=1e-6)


@pytest.mark.slow
def test_bench_prints_speed_and_memory(capsys):
    args = ["bench", "--dataset", "movielens-small", *TINY]
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 0
    out = capsys.readouterr().out
    result, _ = json.JSONDecoder().raw_decode(out[out.index("\n{") + 1:])
    assert len(result["epoch_seconds"]) == 2
    assert result["seconds_per_epoch"] == result["epoch_seconds"][1]  # the warm-up epoch is left out
    assert result["peak_rss_mb"] > 50
    assert result["preset"] == "esasrec" and result["protocol"] == "loo"
