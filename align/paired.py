"""Paired translators: orthogonal Procrustes, ridge regression and a residual MLP, fitted on known pairs.

For users who have pairs (a calibration set embedded by both models) and as the upper bounds the unsupervised
translators are measured against. Rows of `src` and `tgt` are paired unless `pairs` gives (src_idx, tgt_idx).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from align.base import Translator, select_pairs
from align.errors import AlignError
from align.nets import AffineResidualMLP, cosine_loss
from align.vectors import check_vectors, orthogonal_map


def paired_rows(src, tgt, pairs=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs and return row-aligned (X, Y): all rows if `pairs` is None, else the indexed ones."""
    src = check_vectors(src, "source vectors", min_rows=2)
    tgt = check_vectors(tgt, "target vectors", min_rows=2)
    if pairs is None:
        if len(src) != len(tgt):
            raise AlignError(f"paired methods need row-aligned inputs (row i = the same text): source has "
                             f"{len(src)} rows, target {len(tgt)}; give (source_row, target_row) index pairs, "
                             "or use the unsupervised method `geometric`")
        return src, tgt
    x, y = select_pairs(src, tgt, pairs)
    if len(x) < 2:
        raise AlignError(f"paired methods need at least 2 pairs; got {len(x)}")
    return x, y


def affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x @ weight + bias, the bias added in place (one output array, not two)."""
    out = x @ weight
    out += bias
    return out


class _AffinePair(Translator):
    """Two affine maps, forward (source -> target) and backward, stored as plain arrays."""

    def _forward(self, x):
        return affine(x, self.forward_weight_, self.forward_bias_)

    def _backward(self, y):
        return affine(y, self.backward_weight_, self.backward_bias_)

    def _get_state(self):
        return {"forward_weight": self.forward_weight_, "forward_bias": self.forward_bias_,
                "backward_weight": self.backward_weight_, "backward_bias": self.backward_bias_}, {}

    def _tensor_shapes(self, state):
        ds, dt = self.dim_source_, self.dim_target_
        return {"forward_weight": (ds, dt), "forward_bias": (dt,),
                "backward_weight": (dt, ds), "backward_bias": (ds,)}, set()

    def _set_state(self, tensors, state):
        self.forward_weight_ = tensors["forward_weight"]
        self.forward_bias_ = tensors["forward_bias"]
        self.backward_weight_ = tensors["backward_weight"]
        self.backward_bias_ = tensors["backward_bias"]


class ProcrustesTranslator(_AffinePair):
    """Centre both sides, rotate with orthogonal Procrustes, add the other side's mean back."""

    method = "procrustes"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, src, tgt, pairs=None):
        x, y = paired_rows(src, tgt, pairs)
        mx, my = x.mean(0), y.mean(0)
        w = orthogonal_map(x - mx, y - my)
        self.forward_weight_, self.forward_bias_ = w, (my - mx @ w).astype(np.float32)
        self.backward_weight_, self.backward_bias_ = w.T.copy(), (mx - my @ w.T).astype(np.float32)
        self.dim_source_, self.dim_target_ = x.shape[1], y.shape[1]
        self._score_confidence(x, y)
        return self


class RidgeTranslator(_AffinePair):
    """Ridge regression each way; the penalty is chosen by efficient leave-one-out CV over `alphas`."""

    method = "ridge"

    def __init__(self, alphas: tuple = (0.01, 0.1, 1.0, 10.0, 100.0), seed: int = 0):
        self.alphas = list(alphas)
        self.seed = seed

    def _fit_one(self, x, y):
        from sklearn.linear_model import RidgeCV  # imported when used: seconds of start-up otherwise

        model = RidgeCV(alphas=self.alphas).fit(x, y)
        return model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32), float(model.alpha_)

    def fit(self, src, tgt, pairs=None):
        x, y = paired_rows(src, tgt, pairs)
        self.forward_weight_, self.forward_bias_, self.forward_alpha_ = self._fit_one(x, y)
        self.backward_weight_, self.backward_bias_, self.backward_alpha_ = self._fit_one(y, x)
        self.dim_source_, self.dim_target_ = x.shape[1], y.shape[1]
        self._score_confidence(x, y)
        return self

    def _get_state(self):
        tensors, _ = super()._get_state()
        return tensors, {"forward_alpha": self.forward_alpha_, "backward_alpha": self.backward_alpha_}

    def _set_state(self, tensors, state):
        super()._set_state(tensors, state)
        self.forward_alpha_ = state.get("forward_alpha")
        self.backward_alpha_ = state.get("backward_alpha")


def _paired_regression(net: AffineResidualMLP, lr: float, weight_decay: float):
    """The Lightning module that trains `net` (lightning is imported here, not with the module: procrustes and
    ridge, and every command that only loads them, would otherwise pay seconds of start-up for it)."""
    import lightning as L

    class PairedRegression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.lr, self.weight_decay = net, lr, weight_decay

        def training_step(self, batch, _):
            x, y = batch
            loss = cosine_loss(self.net(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", cosine_loss(self.net(x), y), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    return PairedRegression()


class MLPTranslator(Translator):
    """Residual MLP per direction trained with a cosine loss on pairs, starting from the ridge map.

    A held-out 5% of the pairs drives early stopping: fine here, paired methods are supervised by definition.
    """

    method = "mlp"

    def __init__(self, width: int = 1024, dropout: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-4,
                 max_epochs: int = 30, batch_size: int = 256, seed: int = 0, time_budget_s: float | None = None,
                 verbose: bool = False):
        self.width, self.dropout, self.lr, self.weight_decay = width, dropout, lr, weight_decay
        self.max_epochs, self.batch_size, self.seed = max_epochs, batch_size, seed
        self.time_budget_s, self.verbose = time_budget_s, verbose

    def _train_one(self, x: np.ndarray, y: np.ndarray):
        import lightning as L
        from lightning.pytorch.callbacks import EarlyStopping

        L.seed_everything(self.seed, verbose=False)
        net = AffineResidualMLP(x.shape[1], y.shape[1], self.width, self.dropout)
        w, b, _ = RidgeTranslator(seed=self.seed)._fit_one(x, y)
        with torch.no_grad():
            net.affine.weight.copy_(torch.from_numpy(w.T.copy()))
            net.affine.bias.copy_(torch.from_numpy(b))
        order = np.random.default_rng(self.seed).permutation(len(x))
        n_val = max(1, len(x) // 20)
        val, train = order[:n_val], order[n_val:]
        tensors = [torch.from_numpy(a) for a in (x, y)]

        def loader(idx, shuffle):
            ds = TensorDataset(tensors[0][idx], tensors[1][idx])
            return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle,
                              generator=torch.Generator().manual_seed(self.seed))

        budget = None if self.time_budget_s is None else timedelta(seconds=self.time_budget_s / 2)
        trainer = L.Trainer(max_epochs=self.max_epochs, max_time=budget, accelerator="auto", devices=1,
                            logger=False, enable_checkpointing=False, enable_progress_bar=self.verbose,
                            enable_model_summary=False, deterministic=True,
                            callbacks=[EarlyStopping("val_loss", patience=3)])
        trainer.fit(_paired_regression(net, self.lr, self.weight_decay), loader(train, True), loader(val, False))
        return net.cpu().eval()

    def fit(self, src, tgt, pairs=None):
        x, y = paired_rows(src, tgt, pairs)
        self.forward_net_ = self._train_one(x, y)
        self.backward_net_ = self._train_one(y, x)
        self.dim_source_, self.dim_target_ = x.shape[1], y.shape[1]
        self._score_confidence(x, y)
        return self

    @staticmethod
    def _apply(net, x):
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    def _forward(self, x):
        return self._apply(self.forward_net_, x)

    def _backward(self, y):
        return self._apply(self.backward_net_, y)

    def _get_state(self):
        tensors = {f"forward.{k}": v.numpy() for k, v in self.forward_net_.state_dict().items()}
        tensors |= {f"backward.{k}": v.numpy() for k, v in self.backward_net_.state_dict().items()}
        return tensors, {}

    def _directions(self) -> tuple[tuple[str, int, int], ...]:
        return ("forward", self.dim_source_, self.dim_target_), ("backward", self.dim_target_, self.dim_source_)

    def _tensor_shapes(self, state):
        shapes = {}
        for direction, d_in, d_out in self._directions():
            with torch.device("meta"):  # shapes only: no memory, no initialisation
                net = AffineResidualMLP(d_in, d_out, self.width, self.dropout)
            shapes |= {f"{direction}.{k}": tuple(v.shape) for k, v in net.state_dict().items()}
        return shapes, set()

    def _set_state(self, tensors, state):
        for direction, d_in, d_out in self._directions():
            net = AffineResidualMLP(d_in, d_out, self.width, self.dropout)
            prefix = f"{direction}."
            net.load_state_dict({k[len(prefix):]: torch.from_numpy(v) for k, v in tensors.items()
                                 if k.startswith(prefix)})
            setattr(self, f"{direction}_net_", net.eval())
