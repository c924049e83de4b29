"""Training and serving: a plain loop with early stopping, wrapped in ``SequentialRecommender``.

``SequentialRecommender`` is the public API: ``fit`` on an interaction frame, ``recommend`` top-k
per user, ``evaluate`` against a test frame, ``save`` / ``load`` checkpoints. Everything inside
runs on tensors on one device: the training sequences live there as one padded id matrix,
batches are slices of it, negatives are drawn there.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from esasrec import __version__
from esasrec.errors import DataError
from esasrec.losses import draw_negatives, log_q_from_counts, loss_with_negatives
from esasrec.metrics import ranking_metrics, topk_from_scores
from esasrec.model import ModelConfig, SeqRecModel, left_to_right
from esasrec.sequences import Histories, IdMap, build_histories
from esasrec.split import time_order

__all__ = ["TrainConfig", "SequentialRecommender", "resolve_device", "training_sequences"]


@dataclass
class TrainConfig:
    """Optimisation and early stopping (REFERENCE §1.4)."""

    batch_size: int = 128
    lr: float = 1e-3
    epochs: int = 200
    patience: int = 50
    monitor: str = "ndcg@10"  # "ndcg@10" | "recall@10" | "loss" (the model's own loss) | "ce" (full softmax)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "fp32" | "bf16"
    eval_batch_size: int = 256  # users per scoring chunk: (256, I) scores stay cache-friendly
    compile: bool = False  # torch.compile the loss: ~30 s once, then several times faster steps
    progress: bool = True

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def training_sequences(train: pd.DataFrame, items: IdMap, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per user with >= 2 items: their last max_len + 1 train items, right-padded (U, L + 1),
    and each row's length (U,). A row's items are inputs to the one after them."""
    seqs = build_histories(train, items, max_len + 1).seqs
    lengths = (seqs != 0).sum(1)
    keep = lengths >= 2  # a user needs an input and a target
    return left_to_right(seqs[keep], lengths[keep]), lengths[keep]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


def _compiled_loss():
    """``loss_with_negatives`` under torch.compile, falling back to eager if compiling fails.

    dynamic=True because the number of real positions changes every batch. Compiling needs a
    C++ compiler on CPU (Triton on CUDA); without one the first call fails and we say so once.
    """
    compiled = torch.compile(loss_with_negatives, dynamic=True)
    state = {"fn": compiled}

    def loss_fn(*args, **kwargs):
        if state["fn"] is compiled:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); "
                              "training continues without it (--no-compile silences this)")
                state["fn"] = loss_with_negatives
        return state["fn"](*args, **kwargs)

    return loss_fn


def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


class SequentialRecommender:
    """SASRec / eSASRec on interaction frames (``user_id, item_id, timestamp``).

    Example:
        >>> from esasrec.data import load_dataset                      # doctest: +SKIP
        >>> rec = SequentialRecommender(ModelConfig(), TrainConfig(epochs=5)).fit(train, valid)  # doctest: +SKIP
        >>> rec.recommend([1, 2], k=10)                                 # doctest: +SKIP
    """

    def __init__(self, model_config: ModelConfig | None = None, train_config: TrainConfig | None = None):
        self.model_config = copy.deepcopy(model_config or ModelConfig())
        self.train_config = copy.deepcopy(train_config or TrainConfig())
        self.device = resolve_device(self.train_config.device)
        self.model: SeqRecModel | None = None
        self.items: IdMap | None = None
        self.histories: Histories | None = None
        self.item_popularity: torch.Tensor | None = None
        self.history: list[dict] = []  # one record per epoch
        self.best_epoch: int | None = None
        self.train_seconds: float = 0.0
        self.dataset: str | None = None

    # ------------------------------------------------------------------ fitting
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None) -> "SequentialRecommender":
        """Train on ``train``; early-stop on ``valid`` (each row: a user's next item after train).

        Without ``valid`` the model trains for ``epochs`` epochs and keeps the last one.
        """
        mc, tc = self.model_config, self.train_config
        if len(train) == 0:
            raise DataError("fit() got an empty training frame.")
        self.dataset = train.attrs.get("dataset")
        full = train if valid is None else pd.concat([train, valid], ignore_index=True)
        # Items only in the validation fold still belong to the catalogue (they are in histories).
        self.items = IdMap(full["item_id"])
        mc.n_items = len(self.items)
        # Serving histories use every known interaction, validation included.
        self.histories = build_histories(full, self.items, mc.max_len)
        counts = torch.bincount(torch.from_numpy(self.items.encode(train["item_id"].to_numpy())),
                                minlength=mc.n_items + 1)
        self.item_popularity = self._user_popularity(full)

        torch.manual_seed(tc.seed)
        self.model = SeqRecModel(mc).to(self.device)
        log_q = log_q_from_counts(counts).to(self.device) if mc.logq else None

        seqs, lengths = training_sequences(train, self.items, mc.max_len)
        seqs, lengths = seqs.to(self.device), lengths.to(self.device)
        if len(seqs) == 0:
            raise DataError("No user has two or more training interactions; nothing to learn from.")

        val = self._validation_tensors(train, valid) if valid is not None and len(valid) else None
        monitor = tc.monitor
        higher_is_better = monitor not in ("loss", "ce")

        opt_kwargs = {"fused": True} if self.device.type == "cuda" else {}
        optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, betas=(0.9, 0.98), **opt_kwargs)
        generator = torch.Generator(device=self.device).manual_seed(tc.seed)

        self._loss_fn = _compiled_loss() if tc.compile else loss_with_negatives

        best_value, best_state, bad_epochs = None, None, 0
        self.history, self.best_epoch = [], None
        bar = tqdm(range(1, tc.epochs + 1), desc="epochs", disable=not tc.progress, unit="ep")
        started = time.perf_counter()
        for epoch in bar:
            t0 = time.perf_counter()
            loss = self._train_epoch(seqs, lengths, optimizer, generator, log_q)
            record = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - t0}
            if val is not None:
                record.update(self._validate(*val))
                value = record[f"val_{monitor}"]
                improved = best_value is None or (value > best_value if higher_is_better else value < best_value)
                if improved:
                    best_value, self.best_epoch, bad_epochs = value, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    bad_epochs += 1
            self.history.append(record)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("loss", f"val_{monitor}")}
                            | {"best": self.best_epoch})
            if val is not None and bad_epochs >= tc.patience:
                break
        self.train_seconds = time.perf_counter() - started
        if best_state is not None:
            self.model.load_state_dict(best_state)
        else:
            self.best_epoch = len(self.history)
        self.model.eval()
        return self

    def _train_epoch(self, seqs, lengths, optimizer, generator, log_q) -> float:
        mc, tc = self.model_config, self.train_config
        model = self.model
        model.train()
        perm = torch.randperm(len(seqs), generator=generator, device=self.device)
        # Each batch is cut to its longest sequence. Its width and its number of real input
        # positions (a row of length l has l - 1) come to the host together, once per epoch,
        # so that no step waits for the device.
        n_batches = -(-len(perm) // tc.batch_size)
        padded = torch.zeros(n_batches * tc.batch_size, dtype=lengths.dtype, device=self.device)
        padded[: len(perm)] = lengths[perm]
        per_batch = padded.view(n_batches, -1)  # (n_batches, batch_size), 0 past the last user
        widths, n_reals = torch.stack([per_batch.max(1).values - 1, (per_batch - 1).clamp_min(0).sum(1)]).tolist()
        total = torch.zeros((), device=self.device)
        for start, width, n_real in zip(range(0, len(perm), tc.batch_size), widths, n_reals):
            batch = seqs[perm[start:start + tc.batch_size], : width + 1]  # (B, W + 1), right-padded
            targets = batch[:, 1:]  # (B, W)
            inputs = batch[:, :-1] * (targets != 0)  # drop each row's last item from the input
            with _autocast(self.device, tc.precision):
                h, packing = model.encode_packed(inputs, n_real=n_real)  # (N, D): real positions only
                negatives = draw_negatives(mc.loss, len(h), mc.n_negatives, mc.n_items,
                                           shared=mc.shared_negatives, generator=generator, device=self.device)
                loss = self._loss_fn(mc.loss, h, model.item_emb.weight, packing.pack(targets), negatives,
                                     gbce_t=mc.gbce_t, log_q=log_q)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        return float(total) / n_batches

    # --------------------------------------------------------------- validation
    def _validation_tensors(self, train: pd.DataFrame, valid: pd.DataFrame):
        # One target per user: the latest validation row (time, then file order).
        last = time_order(valid).drop_duplicates("user_id", keep="last")
        users = IdMap(last["user_id"], offset=0)
        hist = build_histories(train, self.items, self.model_config.max_len, users=users)
        targets = self.items.encode(last["item_id"].to_numpy(), unknown=0)
        ok = torch.from_numpy(targets > 0)  # a cold validation item cannot be scored
        rows = torch.arange(len(users))[ok]
        return hist, rows, torch.from_numpy(targets)[ok]

    @torch.no_grad()
    def _validate(self, hist: Histories, rows: torch.Tensor, targets: torch.Tensor) -> dict:
        """Validation metrics of the held-out next items (one per user).

        ``val_loss`` is the model's own training loss on them (fixed negatives, the same every
        epoch), as a trainer's validation step computes it; ``val_ce`` the full-catalogue
        cross-entropy; ``val_recall@10`` / ``val_ndcg@10`` rank the whole catalogue, seen items
        excluded. A BCE model's logits are not a softmax, so ``val_ce`` can rise while its own
        loss and its ranking still improve: monitor ``loss`` or a ranking metric, not ``ce``.
        """
        mc, model = self.model_config, self.model
        model.eval()
        sums = {"loss": torch.zeros(()), "ce": torch.zeros(())}
        generator = torch.Generator(device=self.device).manual_seed(self.train_config.seed)

        def score_and_losses(chunk: torch.Tensor) -> torch.Tensor:
            # The catalogue scoring dominates validation, so the losses reuse the scores top-k needs.
            chunk = chunk.cpu()
            seqs = hist.seqs[rows[chunk]].to(self.device)
            target = targets[chunk].to(self.device)
            with _autocast(self.device, self.train_config.precision):
                user_vectors = model.user_vectors(seqs)  # (C, D)
                scores = model.score_all(user_vectors).float()  # (C, I + 1)
                negatives = draw_negatives(mc.loss, len(target), mc.n_negatives, mc.n_items,
                                           shared=mc.shared_negatives, generator=generator, device=self.device)
                own = loss_with_negatives(mc.loss, user_vectors, model.item_emb.weight, target, negatives,
                                          gbce_t=mc.gbce_t)
            sums["loss"] += float(own) * len(target)
            sums["ce"] += (torch.logsumexp(scores[:, 1:], 1) - scores.gather(1, target[:, None])[:, 0]).sum().cpu()
            return scores

        topk = topk_from_scores(score_and_losses, len(rows), 10, **self._seen_csr(hist, rows),
                                chunk_size=self.train_config.eval_batch_size, device=self.device)
        metrics = ranking_metrics(topk, torch.arange(len(rows)), targets, n_items=mc.n_items, k=10, debias=False)
        n = max(len(rows), 1)
        return {"val_loss": float(sums["loss"]) / n, "val_ce": float(sums["ce"]) / n,
                "val_recall@10": metrics["recall@10"], "val_ndcg@10": metrics["ndcg@10"]}

    def _score_rows(self, hist: Histories, rows: torch.Tensor) -> torch.Tensor:
        seqs = hist.seqs[rows].to(self.device)
        with _autocast(self.device, self.train_config.precision):
            scores = self.model.score_all(self.model.user_vectors(seqs))
        return scores.float()

    @staticmethod
    def _seen_csr(hist: Histories, rows: torch.Tensor) -> dict:
        """The seen-item CSR of ``hist`` restricted to ``rows``, as topk_from_scores arguments."""
        starts, ends = hist.seen_indptr[rows], hist.seen_indptr[rows + 1]
        counts = ends - starts
        indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        offsets = torch.arange(int(indptr[-1])) - torch.repeat_interleave(indptr[:-1], counts)
        indices = hist.seen_indices[torch.repeat_interleave(starts, counts) + offsets]
        return {"seen_indptr": indptr, "seen_indices": indices}

    @torch.no_grad()
    def _topk(self, hist: Histories, rows: torch.Tensor, k: int, exclude_seen: bool = True,
              progress: bool = False) -> torch.Tensor:
        """Top-k internal ids (len(rows), k) for history rows, seen items excluded."""
        self.model.eval()
        seen = self._seen_csr(hist, rows) if exclude_seen else {}
        return topk_from_scores(lambda r: self._score_rows(hist, rows[r.cpu()]), len(rows), k, **seen,
                                chunk_size=self.train_config.eval_batch_size, device=self.device,
                                progress=progress)

    def _check_fitted(self):
        if self.model is None:
            raise RuntimeError("this recommender is not fitted yet: call fit() or load() first")

    def known_users(self, users) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the users that have a history, and a mask of which given users do."""
        rows = self.histories.users.encode(list(users))  # a list keeps mixed int/str ids apart
        return rows[rows >= 0], rows >= 0

    def recommend(self, users=None, k: int = 10, exclude_seen: bool = True, progress: bool = False) -> pd.DataFrame:
        """Top-k per user as a frame ``user_id, item_id, rank`` (rank 1 = best).

        Users default to everyone seen in training; unknown users are skipped with a count printed.
        """
        self._check_fitted()
        users = self.histories.users.to_list() if users is None else list(users)
        rows, known = self.known_users(users)
        if (~known).any():
            print(f"recommend: skipped {(~known).sum():,} users with no training history")
        topk = self._topk(self.histories, torch.from_numpy(rows), k, exclude_seen, progress)  # (U, k)
        user_ids = np.repeat(np.asarray(users, dtype=object)[known], topk.shape[1])
        flat = topk.reshape(-1).numpy()
        valid = flat > 0
        return pd.DataFrame({
            "user_id": pd.Series(user_ids[valid]).infer_objects(),
            "item_id": self.items.decode(flat[valid]),
            "rank": np.tile(np.arange(1, topk.shape[1] + 1), len(rows))[valid],
        })

    @torch.no_grad()
    def recommend_for_history(self, items: list, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-k for a new history given as raw item ids (oldest first); unknown items are ignored."""
        self._check_fitted()
        ids = self.items.encode(list(items), unknown=0)
        ids = ids[ids > 0][-self.model_config.max_len:]
        if len(ids) == 0:
            raise DataError("none of the given items is in the model's catalogue; cannot recommend")
        seq = torch.zeros(1, self.model_config.max_len, dtype=torch.long)
        seq[0, -len(ids):] = torch.from_numpy(ids)
        self.model.eval()
        scores = self._score_rows(Histories(self.histories.users, seq, None, None), torch.tensor([0]))[0]
        scores[0] = -torch.inf
        if exclude_seen:
            scores[torch.from_numpy(ids).to(scores.device)] = -torch.inf
        top = scores.topk(min(k, self.model_config.n_items))
        return pd.DataFrame({"item_id": self.items.decode(top.indices), "rank": np.arange(1, len(top.indices) + 1),
                             "score": top.values.cpu().numpy()})

    def evaluate(self, test: pd.DataFrame, k: int = 10, progress: bool = False) -> dict:
        """The metrics of REFERENCE §2.3 for ``test`` (user_id, item_id), with seen items excluded."""
        self._check_fitted()
        test_users = pd.unique(test["user_id"])
        rows, known = self.known_users(test_users)
        topk = self._topk(self.histories, torch.from_numpy(rows), k, True, progress)
        users = IdMap(np.asarray(test_users)[known], offset=0)
        test_rows = users.encode(test["user_id"].to_numpy())
        test_items = self.items.encode(test["item_id"].to_numpy(), unknown=0)
        keep = test_rows >= 0
        metrics = ranking_metrics(topk, torch.from_numpy(test_rows[keep]), torch.from_numpy(test_items[keep]),
                                  n_items=self.model_config.n_items, k=k, item_popularity=self.item_popularity)
        metrics["n_test_users"] = int(len(test_users))
        return metrics

    def _user_popularity(self, train: pd.DataFrame) -> torch.Tensor:
        """Share of train users who interacted with each item (I + 1,), for ARP."""
        pairs = train.drop_duplicates(["user_id", "item_id"])
        ids = torch.from_numpy(self.items.encode(pairs["item_id"].to_numpy()))
        return torch.bincount(ids, minlength=len(self.items) + 1).float() / train["user_id"].nunique()

    # -------------------------------------------------------------- checkpoints
    def save(self, path) -> Path:
        """Write config, weights, id mappings and serving histories to one file (atomic)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": 1,
            "esasrec_version": __version__,
            "model_config": self.model_config.as_dict(),
            "train_config": self.train_config.as_dict(),
            "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "items": [_plain(x) for x in self.items.to_list()],
            "users": [_plain(x) for x in self.histories.users.to_list()],
            "seqs": self.histories.seqs,
            "seen_indptr": self.histories.seen_indptr,
            "seen_indices": self.histories.seen_indices,
            "item_popularity": self.item_popularity,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "dataset": self.dataset,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path, device: str = "auto") -> "SequentialRecommender":
        """Load a checkpoint written by ``save``, onto ``device``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        tc = TrainConfig.from_dict(state["train_config"])
        tc.device = device
        rec = cls(ModelConfig.from_dict(state["model_config"]), tc)
        rec.items = IdMap.from_list(state["items"])
        rec.histories = Histories(IdMap.from_list(state["users"], offset=0), state["seqs"],
                                  state["seen_indptr"], state["seen_indices"])
        rec.item_popularity = state["item_popularity"]
        rec.model = SeqRecModel(rec.model_config).to(rec.device)
        rec.model.load_state_dict(state["state_dict"])
        rec.model.eval()
        rec.history, rec.best_epoch, rec.dataset = state["history"], state["best_epoch"], state["dataset"]
        return rec


def _plain(x):
    """numpy scalars -> Python scalars, so checkpoints load with ``weights_only=True``."""
    return x.item() if isinstance(x, np.generic) else x
