"""Tests for esasrec.data: built-in datasets, user data validation and checked downloads."""

import dataclasses
import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esasrec import data
from esasrec.data import DATASETS, RemoteFile, default_data_dir, fetch, load_dataset, load_item_titles
from esasrec.errors import DataError, DownloadError

SHARED = Path("/work/shared/datasets")


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def fake_dataset(monkeypatch, name: str, files: dict[str, bytes], data_dir: Path) -> None:
    """Write `files` under `data_dir` and point DATASETS[name] at them (right checksums)."""
    remotes = []
    for rel, content in files.items():
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(content)
        remotes.append(RemoteFile(f"https://example.invalid/{rel}", sha(content), len(content), rel))
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], files=tuple(remotes)))


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def frame(**columns) -> pd.DataFrame:
    base = {"user_id": [1, 1, 2], "item_id": [10, 11, 10], "timestamp": [100, 200, 150]}
    return pd.DataFrame({**base, **columns})


# --- paths -------------------------------------------------------------------------------------

def test_default_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ESASREC_DATA_DIR", raising=False)
    assert default_data_dir() == tmp_path / "home" / ".cache" / "esasrec"
    monkeypatch.setenv("ESASREC_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    assert default_data_dir(tmp_path / "arg") == tmp_path / "arg"


# --- built-in datasets -------------------------------------------------------------------------

def test_movielens_small_is_bundled_and_keeps_file_order(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", no_network)  # must not need the network
    df = load_dataset("movielens-small")
    raw = pd.read_csv(data.BUNDLED_DIR / "ml-latest-small" / "ratings.csv")
    assert list(df.columns) == ["user_id", "item_id", "timestamp"]
    assert isinstance(df.index, pd.RangeIndex)
    assert (df.dtypes == "int64").all()
    assert len(df) == 100_836 and df["user_id"].nunique() == 610
    np.testing.assert_array_equal(df["user_id"], raw["userId"])
    np.testing.assert_array_equal(df["item_id"], raw["movieId"])
    np.testing.assert_array_equal(df["timestamp"], raw["timestamp"])
    assert df.attrs == {"dataset": "movielens-small", "timestamps": "real"}


def test_movielens_small_titles():
    titles = load_item_titles("movielens-small")
    assert len(titles) == 9742
    assert titles[1] == "Toy Story (1995)"
    assert load_item_titles("beauty") is None


def test_movielens_small_falls_back_to_zip_in_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "BUNDLED_DIR", tmp_path / "not-a-repo")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-latest-small/ratings.csv",
                    "userId,movieId,rating,timestamp\n2,5,4.0,300\n1,7,3.5,100\n")
        zf.writestr("ml-latest-small/movies.csv", 'movieId,title,genres\n5,"Heat, The (1995)",x\n')
    fake_dataset(monkeypatch, "movielens-small", {"ml-latest-small.zip": archive.getvalue()}, tmp_path)
    df = load_dataset("movielens-small", tmp_path, download=False)
    assert df.to_dict("list") == {"user_id": [2, 1], "item_id": [5, 7], "timestamp": [300, 100]}
    assert load_item_titles("movielens-small", tmp_path) == {5: "Heat, The (1995)"}


def test_ml1m_reads_dat_files_from_zip(tmp_path, monkeypatch):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                         "2::1193::4::978298413\n")
        zf.writestr("ml-1m/movies.dat", "1193::One Flew: Over (1975)::Drama\n"
                                        "661::Café (1996)::Comedy\n".encode("latin-1"))
    fake_dataset(monkeypatch, "ml-1m", {"ml-1m.zip": archive.getvalue()}, tmp_path)
    df = load_dataset("ml-1m", tmp_path)
    assert df.to_dict("list") == {"user_id": [1, 1, 2], "item_id": [1193, 661, 1193],
                                  "timestamp": [978300760, 978302109, 978298413]}
    assert load_item_titles("ml-1m", tmp_path) == {1193: "One Flew: Over (1975)", 661: "Café (1996)"}


@pytest.mark.skipif(not (SHARED / "beauty" / "Beauty.txt").exists(), reason="no offline Beauty copy")
def test_beauty_loads_from_read_only_shared_copy(monkeypatch):
    monkeypatch.setenv("ESASREC_DATA_DIR", str(SHARED))
    df = load_dataset("beauty", download=False)
    assert len(df) == 198_502 and df["user_id"].nunique() == 22_363
    assert df["item_id"].nunique() == 12_101
    assert (df.groupby("user_id", sort=False)["timestamp"].diff().dropna() >= 0).all()
    first_line = (SHARED / "beauty" / "Beauty.txt").read_text().splitlines()[0].split()
    head = df[df["user_id"] == int(first_line[0])]
    assert head["item_id"].tolist() == [int(v) for v in first_line[1:]]
    assert df.attrs == {"dataset": "beauty", "timestamps": "real"}


def test_beauty_files_that_disagree_name_the_line(tmp_path, monkeypatch):
    fake_dataset(monkeypatch, "beauty", {"beauty/Beauty.txt": b"1 5 6\n2 7 8 9\n",
                                         "beauty/Beauty_time.txt": b"1 10 20\n2 30 40\n"}, tmp_path)
    with pytest.raises(DataError, match=r"line 2: user 2 has 3 items.* 2 timestamps"):
        load_dataset("beauty", tmp_path)


def test_sports_uses_positions_and_warns(tmp_path, monkeypatch):
    fake_dataset(monkeypatch, "sports", {"sports/Sports_and_Outdoors.txt": b"3 9 8 7\n1 4\n"}, tmp_path)
    with pytest.warns(UserWarning, match="position"):
        df = load_dataset("sports", tmp_path)
    assert df.to_dict("list") == {"user_id": [3, 3, 3, 1], "item_id": [9, 8, 7, 4],
                                  "timestamp": [0, 1, 2, 0]}
    assert df.attrs["timestamps"] == "position"


def test_download_false_with_missing_file_says_where(tmp_path):
    with pytest.raises(DownloadError) as info:
        load_dataset("ml-1m", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "ml-1m.zip") in message and DATASETS["ml-1m"].files[0].url in message


# --- fetch -------------------------------------------------------------------------------------

def test_fetch_downloads_from_file_url_then_reuses_the_file(tmp_path, monkeypatch):
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3000)
    dest = tmp_path / "cache" / "sub" / "file.bin"
    assert fetch(source.as_uri(), sha(b"x" * 3000), dest, size=3000) == dest
    assert dest.read_bytes() == b"x" * 3000
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]  # no temp file left
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert fetch(source.as_uri(), sha(b"x" * 3000), dest) == dest  # checked, not downloaded


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"tampered")
    dest = tmp_path / "cache" / "file.bin"
    expected = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch(source.as_uri(), expected, dest)
    message = str(info.value)
    for part in (source.as_uri(), expected, sha(b"tampered"), str(dest)):
        assert part in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.bin"]  # no file, no folder


def test_fetch_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    dest = tmp_path / "cache" / "ml" / "file.bin"
    with pytest.raises(DownloadError, match="no network connection") as info:
        fetch("https://example.invalid/file.bin", "0" * 64, dest)
    assert "https://example.invalid/file.bin" in str(info.value) and str(dest) in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []


def test_fetch_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class BrokenResponse(io.BytesIO):
        headers = {"Content-Length": "100"}

        def read(self, n=-1):
            if self.tell():
                raise ConnectionResetError("connection reset by peer")
            return super().read(10)

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: BrokenResponse(b"y" * 100))
    with pytest.raises(DownloadError, match="broke off after 10 bytes") as info:
        fetch("https://example.invalid/f", "0" * 64, tmp_path / "f")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []


def test_fetch_keeps_a_corrupt_existing_file_and_says_so(tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"user's copy")
    with pytest.raises(DownloadError, match="corrupt") as info:
        fetch("https://example.invalid/file.bin", "0" * 64, dest)
    assert str(dest) in str(info.value)
    assert dest.read_bytes() == b"user's copy"


# --- user data ---------------------------------------------------------------------------------

def test_user_frame_is_converted_in_order_without_touching_the_input():
    raw = pd.DataFrame({"who": ["u2", "u1", "u2"], "what": [7.0, 3.0, 7.0], "extra": 0,
                        "when": ["2020-01-02 00:00:01", "2020-01-01", "1970-01-01T01:00:00+01:00"]})
    df = load_dataset(raw, user_col="who", item_col="what", time_col="when")
    assert df.to_dict("list") == {"user_id": ["u2", "u1", "u2"], "item_id": [7, 3, 7],
                                  "timestamp": [1577923201, 1577836800, 0]}
    assert df["item_id"].dtype == "int64" and df["timestamp"].dtype == "int64"
    assert df.attrs == {"dataset": "dataframe", "timestamps": "real"}
    assert list(raw.columns) == ["who", "what", "extra", "when"]  # the caller's frame is intact


def test_datetime_column_becomes_unix_seconds():
    times = pd.to_datetime(["2021-06-01 12:00:00.9", "1969-12-31 23:59:59.5"]).tz_localize("UTC")
    df = load_dataset(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "timestamp": times}))
    assert df["timestamp"].tolist() == [1622548800, -1]  # floor, also before 1970


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_user_files_load_by_suffix(tmp_path, suffix):
    path = tmp_path / f"clicks{suffix}"
    raw = frame(extra=["a", "b", "c"])
    raw.to_csv(path, index=False) if suffix == ".csv" else raw.to_parquet(path)
    df = load_dataset(str(path))
    assert df.to_dict("list") == frame().to_dict("list")
    assert df.attrs["dataset"] == "clicks"


def test_missing_column_lists_the_columns_there():
    with pytest.raises(DataError, match=r"no column\(s\) 'ts'; its columns are 'user_id', "
                                        r"'item_id', 'timestamp'.*time_col="):
        load_dataset(frame(), time_col="ts")


def test_empty_input():
    with pytest.raises(DataError, match="no rows"):
        load_dataset(frame().iloc[:0])


@pytest.mark.parametrize("column", ["user_id", "item_id", "timestamp"])
def test_nulls_name_column_and_row(column):
    raw = frame()
    raw[column] = raw[column].astype("float64")
    raw.loc[1, column] = np.nan
    with pytest.raises(DataError, match=rf"column '{column}' .*missing values.*1 row\(s\), e.g. row 1 "):
        load_dataset(raw)


def test_unparsable_datetime_strings():
    raw = frame(timestamp=["2020-01-01", "2020-13-45", "yesterday"])
    with pytest.raises(DataError, match=r"'timestamp' .*neither numbers nor dates.*2 row\(s\), "
                                        r"e.g. row 1 .*'2020-13-45'.*row 2 .*'yesterday'"):
        load_dataset(raw)


def test_non_numeric_value_in_numeric_timestamps():
    raw = frame(timestamp=["100", "n/a", "150"])
    with pytest.raises(DataError, match=r"'timestamp' holds numbers but .*row 1 .*'n/a'"):
        load_dataset(raw)


def test_fractional_timestamps_are_rejected_not_rounded():
    with pytest.raises(DataError, match=r"'timestamp' has fractional .*row 2 .*150.5"):
        load_dataset(frame(timestamp=[100.0, 200.0, 150.5]))


def test_duplicates_are_reported_not_dropped():
    raw = pd.DataFrame({"u": [1, 1, 2, 1], "i": [5, 6, 5, 5], "t": [10, 10, 10, 10]})
    with pytest.raises(DataError, match=r"\(u, i, t\) more than once, in 1 row\(s\), "
                                        r"e.g. row 3 \(u=1, i=5, t=10\) repeats row 0"):
        load_dataset(raw, user_col="u", item_col="i", time_col="t")


def test_unknown_name_lists_known_datasets(tmp_path):
    with pytest.raises(DataError, match="'movielens' is neither a known dataset.*movielens-small, ml-1m"):
        load_dataset("movielens")
    (tmp_path / "log.txt").write_text("x")
    with pytest.raises(DataError, match=r"must end in \.csv"):
        load_dataset(tmp_path / "log.txt")
