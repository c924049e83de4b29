"""Load interaction logs as one tidy frame: `user_id, item_id, timestamp`, in file order.

Built-in datasets (see `DATASETS` and data/README.md) come from the repository (MovieLens
latest-small is bundled) or from a cache folder, `default_data_dir()`, where `fetch` downloads
them once with a checksum. A user's own data (a DataFrame, a CSV or a Parquet file) is
validated, and every problem is reported as a `DataError` that names the column and the rows.

Rows are never sorted here: among equal timestamps the file order is the tie-break that the
splitters rely on (a stable sort by time), as in the literature.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from tqdm import tqdm

from esasrec.errors import DataError, DownloadError

COLUMNS = ["user_id", "item_id", "timestamp"]
# The repository's data/ folder; absent when the package is installed from a wheel.
BUNDLED_DIR = pathlib.Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: its official URL, checksum, size and place under the data dir."""

    url: str
    sha256: str
    size: int | None
    path: str  # relative to the data dir, e.g. "beauty/Beauty.txt"


@dataclass(frozen=True)
class DatasetInfo:
    """What a built-in dataset is, where its files come from and under which licence."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    licence: str
    redistributable: bool  # only movielens-small may ship inside the repository
    timestamps: str = "real"  # "position" where the source has no times


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/"
_AMAZON = "Amazon review data (McAuley lab): research use only; not redistributed"
DATASETS: dict[str, DatasetInfo] = {
    "movielens-small": DatasetInfo(
        "movielens-small", "MovieLens latest-small (2018): 610 users, 100,836 ratings",
        (RemoteFile(_GROUPLENS + "ml-latest-small.zip",
                    "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
                    978_202, "ml-latest-small.zip"),),
        "MovieLens licence: research use; redistribution allowed under the same terms", True),
    "ml-1m": DatasetInfo(
        "ml-1m", "MovieLens 1M: 6,040 users, 1,000,209 ratings",
        (RemoteFile(_GROUPLENS + "ml-1m.zip",
                    "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                    5_917_549, "ml-1m.zip"),),
        "MovieLens licence: research use; no redistribution", False),
    "ml-20m": DatasetInfo(
        "ml-20m", "MovieLens 20M: 138,493 users, 20,000,263 ratings",
        (RemoteFile(_GROUPLENS + "ml-20m.zip",
                    "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
                    198_702_078, "ml-20m.zip"),),
        "MovieLens licence: research use; no redistribution", False),
    "beauty": DatasetInfo(
        "beauty", "Amazon Beauty 5-core as preprocessed by S3-Rec: 22,363 users, 198,502 rows",
        (RemoteFile(_S3REC + "Beauty.txt",
                    "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
                    1_090_094, "beauty/Beauty.txt"),
         RemoteFile("https://raw.githubusercontent.com/KingGugu/TiCoSeRec/"
                    "302b2959f27bb16bb77acae5a471de82819bd1bd/data/Beauty/Beauty_time_org_rank.txt",
                    "4e6a6e30f9dba1985ad9adae79a891df6b403e2132f0422a6f6e88f67d1fcc75",
                    2_306_594, "beauty/Beauty_time.txt")),
        _AMAZON, False),
    "sports": DatasetInfo(
        "sports", "Amazon Sports and Outdoors 5-core as preprocessed by S3-Rec (no timestamps)",
        (RemoteFile(_S3REC + "Sports_and_Outdoors.txt",
                    "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
                    1_707_483, "sports/Sports_and_Outdoors.txt"),),
        _AMAZON, False, "position"),
    "toys": DatasetInfo(
        "toys", "Amazon Toys and Games 5-core as preprocessed by S3-Rec (no timestamps)",
        (RemoteFile(_S3REC + "Toys_and_Games.txt",
                    "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
                    922_166, "toys/Toys_and_Games.txt"),),
        _AMAZON, False, "position"),
}


def default_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Return the cache folder for downloaded datasets (it is not created here).

    Args:
        data_dir: an explicit folder; wins over everything else.
    Returns:
        `data_dir` if given, else `$ESASREC_DATA_DIR` if set, else `~/.cache/esasrec`.
    """
    chosen = data_dir or os.environ.get("ESASREC_DATA_DIR") or "~/.cache/esasrec"
    return pathlib.Path(chosen).expanduser()


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, sha256: str, dest: pathlib.Path, *, size: int | None = None) -> pathlib.Path:
    """Download `url` to `dest` unless it is there, and check its sha256 either way.

    The download streams into a temporary file beside `dest` that is renamed into place only
    once its checksum is right, so an interrupted or corrupt download leaves nothing behind.

    Args:
        url: where to download from (any scheme urllib opens, `file://` included).
        sha256: expected hex digest of the file.
        dest: where the file lives; its folder is created if needed.
        size: expected size in bytes, if known (sizes the progress bar).
    Returns:
        `dest`.
    Raises:
        DownloadError: offline, HTTP error, broken download, checksum mismatch, or an
            existing `dest` with the wrong checksum (which is left untouched).
    """
    dest = pathlib.Path(dest)
    if dest.exists():
        actual = _sha256(dest)
        if actual != sha256:
            raise DownloadError(
                f"{dest} is corrupt or a different version of {url}: its sha256 is {actual}, "
                f"expected {sha256}. Delete it to download it again, or replace it with a good copy.")
        return dest
    # Folders this call creates, removed again (if still empty) when the download fails.
    new_dirs = [d for d in [dest.parent, *dest.parent.parents] if not d.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as err:
        raise DownloadError(
            f"cannot write {dest} ({err}). Place the file there by hand (from {url}), "
            f"or set ESASREC_DATA_DIR to a writable folder.") from None
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual, n_bytes = _stream(url, out, size, dest)
        if actual != sha256 or (size is not None and n_bytes != size):
            expected_size = f" ({size:,} bytes expected, got {n_bytes:,})" if size else ""
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}"
                f"{expected_size}. The download was deleted. The server may hold a newer "
                f"version; download the right file by hand and place it at {dest}.")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)  # also on Ctrl-C: never leave a partial file
        for folder in new_dirs if not dest.exists() else []:
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was written there meanwhile
                break
    return dest


def _stream(url: str, out, size: int | None, dest: pathlib.Path) -> tuple[str, int]:
    """Copy `url` into the open file `out` with a progress bar; return (sha256, n_bytes)."""
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"could not download {url}: the server answered HTTP {err.code} {err.reason}. "
            f"Download it by hand and place it at {dest}, or set ESASREC_DATA_DIR.") from None
    except OSError as err:  # URLError, DNS failure, refused connection, timeout
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"could not download {url}: no network connection ({reason}). Download it on a "
            f"machine with internet and place it at {dest}, or set ESASREC_DATA_DIR to a "
            f"folder that holds it.") from None
    digest, n_bytes = hashlib.sha256(), 0
    total = size or int(response.headers.get("Content-Length") or 0) or None
    with response, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=f"downloading {dest.name}") as bar:
        try:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                n_bytes += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"the download of {url} broke off after {n_bytes:,} bytes ({err!r}); nothing "
                f"was kept. Run again, or download it by hand and place it at {dest}.") from None
    return digest.hexdigest(), n_bytes


def _obtain(remote: RemoteFile, dataset: str, data_dir, download: bool) -> pathlib.Path:
    """Return the checked local path of a dataset file, downloading it if allowed."""
    dest = default_data_dir(data_dir) / remote.path
    if not download and not dest.exists():
        raise DownloadError(
            f"dataset '{dataset}' needs {dest}, which is missing, and download=False. Download "
            f"{remote.url} (sha256 {remote.sha256}) and place it at {dest}, set ESASREC_DATA_DIR "
            f"to a folder that holds {remote.path}, or pass download=True.")
    return fetch(remote.url, remote.sha256, dest, size=remote.size)


def _frame(users, items, times, name: str, timestamps: str = "real") -> pd.DataFrame:
    df = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times})
    df.attrs = {"dataset": name, "timestamps": timestamps}
    return df


def _read_movielens_csv(f, name: str) -> pd.DataFrame:
    """Read a MovieLens `ratings.csv` (userId,movieId,rating,timestamp), keeping file order."""
    raw = pd.read_csv(f, usecols=["userId", "movieId", "timestamp"], dtype="int64")
    return _frame(raw["userId"], raw["movieId"], raw["timestamp"], name)


def _read_s3rec(path: pathlib.Path) -> tuple[list[int], list[list[str]]]:
    """Parse an S3-Rec file: one line per user, `user_id v_1 v_2 ...`."""
    user_ids, rows = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if parts := line.split():
            user_ids.append(int(parts[0]))
            rows.append(parts[1:])
    return user_ids, rows


def _load_s3rec(info: DatasetInfo, data_dir, download: bool) -> pd.DataFrame:
    """Load an S3-Rec dataset: rows in user-line order, then in the line's (time) order."""
    paths = [_obtain(remote, info.name, data_dir, download) for remote in info.files]
    user_ids, item_rows = _read_s3rec(paths[0])
    lengths = np.array([len(row) for row in item_rows], dtype=np.int64)
    users = np.repeat(np.array(user_ids, dtype=np.int64), lengths)
    items = np.array([v for row in item_rows for v in row], dtype=np.int64)
    if info.timestamps == "position":
        warnings.warn(
            f"'{info.name}' has no timestamps: the timestamp column is each item's position in "
            f"its user's sequence (0, 1, 2, ...). Use leave-one-out; a global time split is "
            f"meaningless for this dataset.", stacklevel=4)
        times = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else lengths
        return _frame(users, items, times, info.name, "position")
    time_users, time_rows = _read_s3rec(paths[1])
    a, b = paths[0].name, paths[1].name
    if len(time_users) != len(user_ids):
        raise DataError(f"{a} has {len(user_ids)} user lines but {b} has {len(time_users)}; "
                        f"both must come from the same preprocessing: delete both and reload.")
    for line, (u, tu, row, trow) in enumerate(zip(user_ids, time_users, item_rows, time_rows), 1):
        if u != tu or len(row) != len(trow):
            raise DataError(
                f"{a} and {b} disagree at line {line}: user {u} has {len(row)} items in {a}, "
                f"while {b} has user {tu} with {len(trow)} timestamps. Both files must come from "
                f"the same preprocessing: delete both and reload to download matching copies.")
    times = np.array([t for row in time_rows for t in row], dtype=np.int64)
    return _frame(users, items, times, info.name)


def _load_builtin(name: str, data_dir, download: bool) -> pd.DataFrame:
    info = DATASETS[name]
    if name == "movielens-small" and (BUNDLED_DIR / "ml-latest-small" / "ratings.csv").is_file():
        return _read_movielens_csv(BUNDLED_DIR / "ml-latest-small" / "ratings.csv", name)
    if name in ("movielens-small", "ml-20m", "ml-1m"):
        path = _obtain(info.files[0], name, data_dir, download)
        folder = "ml-latest-small" if name == "movielens-small" else name
        with zipfile.ZipFile(path) as zf:
            if name != "ml-1m":
                with zf.open(f"{folder}/ratings.csv") as f:
                    return _read_movielens_csv(f, name)
            # ratings.dat is `u::i::r::t`; splitting on ':' leaves empty fields between, which
            # keeps pandas' fast C parser (a two-character separator would need the Python one).
            with zf.open("ml-1m/ratings.dat") as f:
                raw = pd.read_csv(f, sep=":", header=None, usecols=[0, 2, 6], dtype="int64")
        return _frame(raw[0], raw[2], raw[6], name)
    return _load_s3rec(info, data_dir, download)


def load_item_titles(dataset: str, data_dir=None) -> dict | None:
    """Map raw item ids to titles for the MovieLens datasets.

    Args:
        dataset: a name from `DATASETS`.
        data_dir: cache folder (see `default_data_dir`); the file is downloaded if missing.
    Returns:
        `{item_id: title}`, or None for datasets whose source has no titles.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}'; known datasets: {', '.join(DATASETS)}.")
    if dataset not in ("movielens-small", "ml-1m", "ml-20m"):
        return None
    bundled = BUNDLED_DIR / "ml-latest-small" / "movies.csv"
    if dataset == "movielens-small" and bundled.is_file():
        movies = pd.read_csv(bundled, usecols=["movieId", "title"])
        return dict(zip(movies["movieId"].tolist(), movies["title"].tolist()))
    path = _obtain(DATASETS[dataset].files[0], dataset, data_dir, True)
    folder = "ml-latest-small" if dataset == "movielens-small" else dataset
    with zipfile.ZipFile(path) as zf:
        if dataset != "ml-1m":
            with zf.open(f"{folder}/movies.csv") as f:
                movies = pd.read_csv(f, usecols=["movieId", "title"])
            return dict(zip(movies["movieId"].tolist(), movies["title"].tolist()))
        # movies.dat is `id::title::genres` in latin-1; titles contain single colons only.
        lines = zf.read("ml-1m/movies.dat").decode("latin-1").splitlines()
    return {int(i): title for i, title, _ in (line.split("::", 2) for line in lines if line)}


def _rows(df: pd.DataFrame, mask, cols: list[str], earlier=None) -> str:
    """Describe up to 5 rows where `mask` is True, as `row 3 (user=1, item=7, ts=nan)`."""
    positions = np.flatnonzero(np.asarray(mask))
    values = {c: df[c].iloc[positions[:5]].tolist() for c in cols}  # Python scalars read best
    shown = "; ".join(
        f"row {p} (" + ", ".join(f"{c}={values[c][k]!r}" for c in cols) + ")"
        + (f" repeats row {earlier[p]}" if earlier is not None else "")
        for k, p in enumerate(positions[:5]))
    return f"{len(positions):,} row(s), e.g. {shown} (row numbers count data rows from 0, as df.iloc)"


def _ids(col: pd.Series) -> pd.Series:
    """Integer-like ids become int64; anything else becomes strings."""
    if ptypes.is_integer_dtype(col) and not ptypes.is_bool_dtype(col):
        return col.astype("int64")
    if ptypes.is_float_dtype(col) and np.all(np.floor(col) == col):
        return col.astype("int64")
    return col.astype(str)


def _unix_seconds(df: pd.DataFrame, col: str, cols: list[str]) -> pd.Series:
    """Convert a timestamp column to int64 unix seconds, or raise a DataError naming the rows."""
    ts = df[col]
    if ptypes.is_bool_dtype(ts):
        raise DataError(f"column '{col}' holds booleans, not timestamps: pass unix seconds "
                        f"(integers) or datetimes, or name the right column with time_col=.")
    if not (ptypes.is_numeric_dtype(ts) or ptypes.is_datetime64_any_dtype(ts)):
        numbers = pd.to_numeric(ts, errors="coerce")
        if numbers.notna().mean() > 0.5:  # mostly numbers: report the rows that are not
            if numbers.isna().any():
                raise DataError(
                    f"column '{col}' holds numbers but some values are not numeric, in "
                    f"{_rows(df, numbers.isna(), cols)}. Fix or remove these rows, or convert "
                    f"the column to integer unix seconds yourself.")
            ts = numbers
    if ptypes.is_numeric_dtype(ts):
        bad = ~np.isfinite(ts) | (np.floor(ts) != ts)
        if bad.any():
            raise DataError(
                f"column '{col}' has fractional or infinite timestamps in {_rows(df, bad, cols)}. "
                f"Timestamps must be whole unix seconds: convert them first, e.g. "
                f"df['{col}'] = np.floor(df['{col}']).astype('int64').")
        return ts.astype("int64")
    if ptypes.is_datetime64_any_dtype(ts):
        parsed = pd.to_datetime(ts, utc=True)  # naive datetimes are taken as UTC
    else:
        # The fast path infers one format from the first value; rows in another format get a
        # second, per-value ("mixed") parse.
        parsed = pd.to_datetime(ts, errors="coerce", utc=True)
        retry = parsed.isna()
        if retry.any():
            parsed = parsed.astype("datetime64[ns, UTC]")
            parsed[retry] = pd.to_datetime(ts[retry], errors="coerce", utc=True, format="mixed")
        if parsed.isna().any():
            raise DataError(
                f"column '{col}' has values that are neither numbers nor dates, in "
                f"{_rows(df, parsed.isna(), cols)}. Fix these values (e.g. '2020-01-31 12:00:00'), "
                f"or pass time_col= naming the column that holds the timestamps.")
    # Floor division keeps whole seconds, dropping sub-second parts (also before 1970).
    return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _validate(raw: pd.DataFrame, name: str, user_col: str, item_col: str, time_col: str):
    """Check a user's interaction table and return it in the standard three-column form."""
    cols = [user_col, item_col, time_col]
    missing = [c for c in cols if c not in raw.columns]
    if missing:
        raise DataError(
            f"{name} has no column(s) {', '.join(map(repr, missing))}; its columns are "
            f"{', '.join(map(repr, map(str, raw.columns)))}. Name the right ones with "
            f"user_col=, item_col= and time_col= (on the command line: --user-col, --item-col, --time-col).")
    if len(set(cols)) < 3:
        raise DataError(f"user_col, item_col and time_col must be three different columns, "
                        f"got {cols}.")
    if raw.empty:
        raise DataError(f"{name} has no rows: there are no interactions to load.")
    df = raw[cols].reset_index(drop=True)
    for c in cols:
        if df[c].isna().any():
            raise DataError(
                f"column '{c}' of {name} has missing values in {_rows(df, df[c].isna(), cols)}. "
                f"Fill or drop these rows first, e.g. df = df.dropna(subset=['{c}']).")
    out = pd.DataFrame({"user_id": _ids(df[user_col]), "item_id": _ids(df[item_col]),
                        "timestamp": _unix_seconds(df, time_col, cols)})
    repeats = out.duplicated(keep="first").to_numpy()
    if repeats.any():
        # Name the earlier row each repeat copies, so both can be looked at.
        group = out.groupby(COLUMNS, sort=False).ngroup().to_numpy()
        first = pd.Series(np.arange(len(out))).groupby(group).transform("min").to_numpy()
        raise DataError(
            f"{name} has the same ({user_col}, {item_col}, {time_col}) more than once, in "
            f"{_rows(df, repeats, cols, first)}. Nothing was dropped: if they are true "
            f"repeats, remove them with df.drop_duplicates({cols}); otherwise give them "
            f"distinct timestamps.")
    out.attrs = {"dataset": name, "timestamps": "real"}
    return out


_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def load_dataset(dataset: str | os.PathLike | pd.DataFrame, data_dir=None, *,
                 user_col: str = "user_id", item_col: str = "item_id",
                 time_col: str = "timestamp", download: bool = True) -> pd.DataFrame:
    """Load interactions as columns `user_id, item_id, timestamp`, in the source's order.

    Args:
        dataset: a name from `DATASETS`, a path to a `.csv`/`.csv.gz`/`.parquet` file, or a
            DataFrame. A string that is not a known name is taken as a path.
        data_dir: cache folder for built-in datasets (see `default_data_dir`).
        user_col, item_col, time_col: column names in a user's file or frame (ignored for
            built-in datasets). Extra columns are ignored.
        download: fetch missing built-in files; with False a missing file is a DownloadError.
    Returns:
        A frame with a RangeIndex, never sorted (file order breaks timestamp ties). `timestamp`
        is int64 unix seconds: datetimes and date strings are converted (naive ones taken as
        UTC, sub-second parts dropped); numbers must be whole, else DataError. Ids are int64
        when integer-like, else strings. `attrs["dataset"]` is the name (file stem, or
        "dataframe"); `attrs["timestamps"]` is "real", or "position" for sports/toys.
    Raises:
        DataError: unknown name, missing columns, no rows, nulls, bad timestamps, duplicated
            (user, item, timestamp) rows.
        DownloadError: a built-in file is missing and cannot be downloaded, or is corrupt.
    """
    if isinstance(dataset, pd.DataFrame):
        return _validate(dataset, "dataframe", user_col, item_col, time_col)
    if isinstance(dataset, str) and dataset in DATASETS:
        return _load_builtin(dataset, data_dir, download)
    path = pathlib.Path(dataset).expanduser()
    if not path.is_file():
        raise DataError(
            f"'{dataset}' is neither a known dataset nor an existing file. Known datasets: "
            f"{', '.join(DATASETS)}; or pass a path to a .csv or .parquet file, or a DataFrame.")
    suffix = next((s for s in _SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise DataError(f"cannot read {path}: the file name must end in "
                        f"{', '.join(_SUFFIXES)} (CSV with a header row, or Parquet).")
    raw = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    df = _validate(raw, path.name, user_col, item_col, time_col)
    df.attrs["dataset"] = path.name[: -len(suffix)]
    return df
