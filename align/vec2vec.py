"""vec2vec (Jha et al. 2025) as released: adapters + shared backbone trained with GANs, reconstruction, cycle and
vector-space-preservation losses on two unpaired sets of precomputed vectors, with Lightning doing the loop.

`Vec2VecTranslator` is the public estimator; `Vec2VecNet` (the generator, what the artifact stores),
`Vec2VecModule` (losses + optimisers) and `UnpairedVectors` (data) are the Lightning pieces behind it.
"""

from __future__ import annotations

import math
import os
import time
from datetime import timedelta
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, Timer
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Sampler, TensorDataset

from align.base import Translator
from align.confidence import translation_confidence
from align.errors import AlignError
from align.nets import Discriminator, ResidualMLP, cosine_loss, lsgan_discriminator_loss, lsgan_generator_loss, vsp_loss
from align.vectors import check_vectors, unit_rows

SPACES = ("src", "tgt")
# Lightning counts every optimiser step in `global_step`; one training iteration steps the critics and the
# generator, so iterations = global_step / 2.
OPT_STEPS_PER_ITERATION = 2


class Vec2VecNet(nn.Module):
    """Input adapter per space -> shared backbone -> output adapter per space; outputs are unit vectors."""

    def __init__(self, dims: dict[str, int], width: int, adapter_depth: int, backbone_depth: int, norm: str,
                 dropout: float):
        super().__init__()
        self.in_adapters = nn.ModuleDict(
            {k: ResidualMLP(d, width, width, adapter_depth, norm, dropout) for k, d in dims.items()})
        self.backbone = ResidualMLP(width, width, width, backbone_depth, norm, dropout)
        self.out_adapters = nn.ModuleDict(
            {k: ResidualMLP(width, d, width, adapter_depth, norm, dropout) for k, d in dims.items()})

    def latent(self, x: torch.Tensor, space: str) -> torch.Tensor:
        return self.backbone(self.in_adapters[space](x))

    def decode(self, z: torch.Tensor, space: str) -> torch.Tensor:
        return F.normalize(self.out_adapters[space](z), dim=1)

    def forward(self, x: torch.Tensor, source: str, target: str) -> torch.Tensor:
        return self.decode(self.latent(x, source), target)


class _Shuffle(Sampler[int]):
    """A fresh permutation of one side on every pass, cut into this rank's share.

    Each side has its own seed so source and target batches are drawn independently (no fixed index pairing,
    which a shared DistributedSampler seed would create); the pass counter makes the shorter, cycled side
    reshuffle too.
    """

    def __init__(self, n: int, seed: int, rank: int, world: int):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.passes = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self):
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_009 + self.passes)
        self.passes += 1
        perm = torch.randperm(self.n, generator=g)[: len(self) * self.world]
        return iter(perm[self.rank::self.world].tolist())


class UnpairedVectors(L.LightningDataModule):
    """Two independent shuffled streams of unit vectors, one per space, combined batch by batch."""

    def __init__(self, src: np.ndarray, tgt: np.ndarray, batch_size: int, seed: int):
        super().__init__()
        self.arrays = {"src": src, "tgt": tgt}
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> CombinedLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        loaders = {}
        for i, (name, x) in enumerate(self.arrays.items()):
            sampler = _Shuffle(len(x), self.seed * 2 + i, rank, world)
            # BatchNorm needs >1 row and a partial last batch would skew its statistics
            batch = max(2, min(self.batch_size, len(sampler)))
            loaders[name] = DataLoader(TensorDataset(torch.as_tensor(x)), batch_size=batch, sampler=sampler,
                                       drop_last=True)
        return CombinedLoader(loaders, mode="max_size_cycle")


class Vec2VecModule(L.LightningModule):
    """Generator + three least-squares discriminators (target outputs, source outputs, latent) and losses."""

    def __init__(self, dims: dict[str, int], hp: dict):
        super().__init__()
        self.hp = hp
        self.automatic_optimization = False  # alternating GAN updates
        self.net = Vec2VecNet(dims, hp["width"], hp["adapter_depth"], hp["backbone_depth"], hp["norm"],
                              hp["dropout"])
        self.discriminators = nn.ModuleDict({
            **{k: Discriminator(d, hp["disc_width"], hp["disc_depth"]) for k, d in dims.items()},
            "latent": Discriminator(hp["width"], hp["disc_width"], hp["disc_depth"]),
        })

    def configure_optimizers(self):
        hp = self.hp
        gen = torch.optim.Adam(self.net.parameters(), lr=hp["lr"], betas=tuple(hp["betas"]))
        # Adam is per-parameter, so one optimiser over the three critics equals the released three
        disc = torch.optim.Adam(self.discriminators.parameters(), lr=hp["disc_lr"], betas=tuple(hp["betas"]),
                                eps=hp["disc_eps"])
        warmup = max(1, hp["warmup_steps"])
        schedules = [torch.optim.lr_scheduler.LambdaLR(o, _Warmup(warmup)) for o in (gen, disc)]
        return [gen, disc], schedules

    def training_step(self, batch, batch_idx):
        hp = self.hp
        (x,), (y,) = batch["src"], batch["tgt"]
        inputs = {"src": F.normalize(x, dim=1), "tgt": F.normalize(y, dim=1)}
        opt_gen, opt_disc = self.optimizers()
        sched_gen, sched_disc = self.lr_schedulers()

        latents = {k: self.net.latent(v, k) for k, v in inputs.items()}
        recons = {k: self.net.decode(latents[k], k) for k in SPACES}
        trans = {k: self.net.decode(latents[_other(k)], k) for k in SPACES}  # trans[k]: other side -> k

        # critics first, on detached fakes; the generator then faces the updated critics (as released)
        d = self.discriminators
        disc_loss = sum(lsgan_discriminator_loss(d[k](inputs[k]), d[k](trans[k].detach())) for k in SPACES)
        # the latent critic takes target latents as real: source latents are pulled onto them
        disc_loss = disc_loss + lsgan_discriminator_loss(d["latent"](latents["tgt"].detach()),
                                                         d["latent"](latents["src"].detach()))
        opt_disc.zero_grad()
        self.manual_backward(disc_loss)
        self.clip_gradients(opt_disc, gradient_clip_val=hp["max_grad_norm"], gradient_clip_algorithm="norm")
        opt_disc.step()
        sched_disc.step()

        self.toggle_optimizer(opt_gen)  # critics frozen while the generator learns against them
        gan = sum(lsgan_generator_loss(d[k](trans[k])) for k in SPACES)
        latent_gan = lsgan_generator_loss(d["latent"](latents["src"]))
        rec = _mean(cosine_loss(recons[k], inputs[k]) for k in SPACES)
        vsp = _mean(vsp_loss(inputs[k], recons[k]) for k in SPACES)
        # cycle: translate the detached translation back, as the released code does
        cycles = {k: self.net(trans[_other(k)].detach(), _other(k), k) for k in SPACES}
        cycle = _mean(cosine_loss(cycles[k], inputs[k]) for k in SPACES)
        cycle_vsp = _mean(vsp_loss(inputs[k], cycles[k]) for k in SPACES)
        gen_loss = (hp["w_gan"] * gan + hp["w_latent_gan"] * latent_gan + hp["w_rec"] * rec
                    + hp["w_vsp"] * vsp + hp["w_cycle"] * cycle + hp["w_cycle_vsp"] * cycle_vsp)
        if not torch.isfinite(gen_loss):
            raise AlignError(f"vec2vec training diverged at step {self.global_step} (loss {gen_loss.item()}); "
                             "try another seed or a lower lr")
        opt_gen.zero_grad()
        self.manual_backward(gen_loss)
        self.clip_gradients(opt_gen, gradient_clip_val=hp["max_grad_norm"], gradient_clip_algorithm="norm")
        opt_gen.step()
        sched_gen.step()
        self.untoggle_optimizer(opt_gen)

        self.log_dict({"loss/gen": gen_loss.detach(), "loss/disc": disc_loss.detach(), "loss/gan": gan.detach(),
                       "loss/latent_gan": latent_gan.detach(), "loss/rec": rec.detach(),
                       "loss/vsp": vsp.detach(), "loss/cycle": cycle.detach(),
                       "loss/cycle_vsp": cycle_vsp.detach()}, prog_bar=False)


class _Warmup:
    """Linear learning-rate warm-up, then constant (the released `no_scheduler = true`); picklable."""

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, step: int) -> float:
        return min(1.0, step / self.steps)


class _ConfidenceSelection(Callback):
    """Keep the generator weights with the best label-free confidence seen every `every` steps and at the end.

    This replaces the released code's early stopping on a paired validation rank, which leaks labels.
    """

    def __init__(self, src: np.ndarray, tgt: np.ndarray, every: int | None, samples: int, seed: int):
        self.src, self.tgt, self.every, self.samples, self.seed = src, tgt, every, samples, seed
        self.best_score, self.best_step, self.best_state = -math.inf, -1, None
        self.history: list[tuple[int, float]] = []

    def evaluate(self, net: Vec2VecNet) -> dict:
        return translation_confidence(self.src, self.tgt, _numpy_fn(net, "src", "tgt"), _numpy_fn(net, "tgt", "src"),
                                      max_samples=self.samples, seed=self.seed)

    def _consider(self, trainer, module) -> None:
        step = trainer.global_step // OPT_STEPS_PER_ITERATION
        if self.history and self.history[-1][0] == step:  # already scored (periodic check, then train end)
            return
        score = self.evaluate(module.net)["score"]
        self.history.append((step, score))
        if score > self.best_score:
            self.best_score, self.best_step = score, step
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every and trainer.global_step % (self.every * OPT_STEPS_PER_ITERATION) == 0:
            self._consider(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self._consider(trainer, module)

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_step": self.best_step, "best_state": self.best_state,
                "history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_step = state["best_score"], state["best_step"]
        self.best_state, self.history = state["best_state"], list(state["history"])


class Vec2VecTranslator(Translator):
    """Unsupervised GAN translator (vec2vec). Defaults are the released `configs/unsupervised.toml` values.

    `batch_size` is per process. `time_budget_s` bounds the whole training run (a resumed run counts the
    time already spent). `select_every` steps (and at the end) the label-free confidence picks the kept
    weights. `checkpoint_dir` holds Lightning training checkpoints (`last.ckpt`); `resume=True` continues
    from there. The saved artifact holds the generator only, as safetensors + JSON.
    """

    method = "vec2vec"
    min_rows = 64

    def __init__(self, width: int = 1024, adapter_depth: int = 3, backbone_depth: int = 4, norm: str = "batch",
                 dropout: float = 0.1, disc_width: int = 1024, disc_depth: int = 5, lr: float = 2e-5,
                 disc_lr: float = 1e-5, betas: tuple[float, float] = (0.5, 0.999), disc_eps: float = 6.25e-10,
                 batch_size: int = 256, warmup_steps: int = 2000, w_gan: float = 1.0, w_latent_gan: float = 1.0,
                 w_rec: float = 1.0, w_vsp: float = 1.0, w_cycle: float = 10.0, w_cycle_vsp: float = 10.0,
                 max_grad_norm: float = 1000.0, max_steps: int = 100_000, time_budget_s: float | None = None,
                 select_every: int | None = 500, confidence_samples: int = 4096, seed: int = 0,
                 devices: int | str | list = "auto", strategy: str = "auto", accelerator: str = "auto",
                 precision: str = "auto", checkpoint_dir: str | None = None, checkpoint_every: int = 500,
                 resume: bool = False):
        self.width, self.adapter_depth, self.backbone_depth = width, adapter_depth, backbone_depth
        self.norm, self.dropout = norm, dropout
        self.disc_width, self.disc_depth = disc_width, disc_depth
        self.lr, self.disc_lr, self.betas, self.disc_eps = lr, disc_lr, betas, disc_eps
        self.batch_size, self.warmup_steps = batch_size, warmup_steps
        self.w_gan, self.w_latent_gan, self.w_rec, self.w_vsp = w_gan, w_latent_gan, w_rec, w_vsp
        self.w_cycle, self.w_cycle_vsp, self.max_grad_norm = w_cycle, w_cycle_vsp, max_grad_norm
        self.max_steps, self.time_budget_s = max_steps, time_budget_s
        self.select_every, self.confidence_samples, self.seed = select_every, confidence_samples, seed
        self.devices, self.strategy, self.accelerator, self.precision = devices, strategy, accelerator, precision
        self.checkpoint_dir, self.checkpoint_every, self.resume = checkpoint_dir, checkpoint_every, resume

    # -- training ------------------------------------------------------------------------------------
    def fit(self, src, tgt, pairs=None) -> Vec2VecTranslator:
        if pairs is not None:
            raise AlignError("vec2vec trains without paired data; drop `pairs` (or use procrustes/ridge/mlp)")
        src = unit_rows(check_vectors(src, "source vectors", min_rows=self.min_rows)).numpy()
        tgt = unit_rows(check_vectors(tgt, "target vectors", min_rows=self.min_rows)).numpy()
        ckpt_dir = Path(self.checkpoint_dir) if self.checkpoint_dir else None
        if self.resume and ckpt_dir is None:
            raise AlignError("resume=True needs checkpoint_dir, the folder holding last.ckpt")
        ckpt_path = None
        if self.resume and (ckpt_dir / "last.ckpt").exists():
            ckpt_path = str(ckpt_dir / "last.ckpt")

        L.seed_everything(self.seed, workers=True, verbose=False)
        dims = {"src": src.shape[1], "tgt": tgt.shape[1]}
        module = Vec2VecModule(dims, self._hparams())
        selection = _ConfidenceSelection(src, tgt, self.select_every, self.confidence_samples, self.seed)
        callbacks: list[Callback] = [selection]
        if self.time_budget_s is not None:
            callbacks.append(Timer(duration=timedelta(seconds=float(self.time_budget_s)), interval="step",
                                   verbose=False))
        if ckpt_dir is not None:
            callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                             every_n_train_steps=self.checkpoint_every * OPT_STEPS_PER_ITERATION))
        on_gpu = self.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        trainer = L.Trainer(
            accelerator=self.accelerator, devices=self.devices, strategy=_strategy(self.strategy),
            precision=_precision(self.precision, on_gpu), max_epochs=-1,
            max_steps=self.max_steps * OPT_STEPS_PER_ITERATION, callbacks=callbacks, logger=False,
            enable_checkpointing=ckpt_dir is not None,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            deterministic=True if not on_gpu else "warn", default_root_dir=ckpt_dir,
            use_distributed_sampler=False,  # UnpairedVectors shards per rank itself, with a seed per side
        )
        started = time.monotonic()
        try:
            try:
                trainer.fit(module, datamodule=UnpairedVectors(src, tgt, self.batch_size, self.seed),
                            ckpt_path=ckpt_path)
            except RuntimeError as e:
                if ckpt_path is None or "state_dict" not in str(e):
                    raise
                raise AlignError(f"{ckpt_path} was trained with other shapes (dims or widths) than this run; "
                                 "use another checkpoint_dir or resume=False") from None
            if ckpt_dir is not None:
                # the periodic checkpoints miss a stop between them (max_steps, time budget)
                trainer.save_checkpoint(ckpt_dir / "last.ckpt")
        finally:
            torch.use_deterministic_algorithms(deterministic_before)

        net = module.net.cpu().float()
        if selection.best_state is not None:
            net.load_state_dict(selection.best_state)
        self.net_ = net.eval()
        self.dim_source_, self.dim_target_ = dims["src"], dims["tgt"]
        self.n_steps_ = int(trainer.global_step) // OPT_STEPS_PER_ITERATION
        self.selected_step_ = int(selection.best_step)
        self.confidence_history_ = list(selection.history)
        self.train_seconds_ = time.monotonic() - started
        self.rank_ = int(trainer.global_rank)
        self.confidence_ = selection.evaluate(net)
        return self

    def _hparams(self) -> dict:
        return {k: v for k, v in self.get_params().items()
                if k not in ("max_steps", "time_budget_s", "seed", "devices", "strategy", "accelerator",
                             "precision", "checkpoint_dir", "checkpoint_every", "resume")}

    # -- inference -----------------------------------------------------------------------------------
    def _forward(self, x: np.ndarray) -> np.ndarray:
        return _numpy_fn(self.net_, "src", "tgt")(x)

    def _backward(self, y: np.ndarray) -> np.ndarray:
        return _numpy_fn(self.net_, "tgt", "src")(y)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, meta: dict | None = None) -> Path:
        """Write the artifact; under multi-process training only rank 0 writes (others return the path)."""
        if getattr(self, "rank_", 0) != 0:
            return Path(directory)
        return super().save(directory, meta)

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        tensors = {k: v.detach().cpu().float().numpy() for k, v in self.net_.state_dict().items()}
        return tensors, {"n_steps": self.n_steps_, "selected_step": self.selected_step_}

    def _net(self) -> Vec2VecNet:
        return Vec2VecNet({"src": self.dim_source_, "tgt": self.dim_target_}, self.width, self.adapter_depth,
                          self.backbone_depth, self.norm, self.dropout)

    def _tensor_shapes(self, state):
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            net = self._net()
        return {k: tuple(v.shape) for k, v in net.state_dict().items()}, set()

    def _set_state(self, tensors: dict[str, np.ndarray], state: dict) -> None:
        net = self._net()
        reference = net.state_dict()
        # safetensors stores float32; integer buffers (BatchNorm's step counter) get their dtype back here
        net.load_state_dict({k: torch.as_tensor(v).to(reference[k].dtype) for k, v in tensors.items()},
                            strict=True)
        self.net_ = net.eval()
        self.n_steps_ = int(state.get("n_steps", 0))
        self.selected_step_ = int(state.get("selected_step", -1))


def _numpy_fn(net: Vec2VecNet, source: str, target: str, chunk: int = 4096):
    """numpy -> numpy translation through `net` in eval mode, on the device the net lives on."""
    def fn(x: np.ndarray) -> np.ndarray:
        param = next(net.parameters())
        was_training = net.training
        net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(x), chunk):
                t = torch.as_tensor(np.asarray(x[start:start + chunk], dtype=np.float32), device=param.device)
                out.append(net(F.normalize(t.to(param.dtype), dim=1), source, target).float().cpu().numpy())
        net.train(was_training)
        return np.concatenate(out)
    return fn


def _other(space: str) -> str:
    return "tgt" if space == "src" else "src"


def _mean(values) -> torch.Tensor:
    values = list(values)
    return sum(values) / len(values)


def _strategy(strategy):
    # the alternating critic/generator backward passes leave one side's parameters without gradients,
    # which DDP only tolerates when it looks for unused parameters
    if isinstance(strategy, str) and strategy.startswith("ddp") and "find_unused" not in strategy:
        return f"{strategy}_find_unused_parameters_true"
    return strategy


def _precision(precision: str, on_gpu: bool) -> str:
    if precision != "auto":
        return precision
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


__all__ = ["Vec2VecTranslator", "Vec2VecNet", "Vec2VecModule", "UnpairedVectors"]
