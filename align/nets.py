"""Torch building blocks for non-linear translators: vec2vec's residual MLP, the paired MLP's affine map with a
residual MLP correction, a GAN discriminator, and the losses of vec2vec (least-squares GAN, 1 - cos
reconstruction/cycle, vector-space preservation)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from align.errors import AlignError

_NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def _match_width(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad or truncate features so a residual can cross a change of width (as vec2vec's MLPs do)."""
    if x.shape[1] == width:
        return x
    if x.shape[1] > width:
        return x[:, :width]
    return F.pad(x, (0, width - x.shape[1]))


def _kaiming_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResidualMLP(nn.Module):
    """`depth` residual blocks in_dim -> width -> ... -> out_dim, each block's input added back to its output.

    Block 0: Linear+SiLU. Middle blocks: Linear+SiLU+norm+dropout. Last block: Linear+dropout+SiLU+Linear.
    The normalisation sits inside the residual branch, so the identity path stays clean (vec2vec's layout).
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 1024, depth: int = 3, norm: str = "batch",
                 dropout: float = 0.1):
        super().__init__()
        if norm not in _NORMS:
            raise AlignError(f"norm={norm!r}; choose one of {', '.join(_NORMS)}")
        if depth < 1:
            raise AlignError(f"depth={depth}; a ResidualMLP needs at least one block")
        blocks = []
        for i in range(depth):
            d_in = in_dim if i == 0 else width
            if depth == 1:
                blocks.append(nn.Sequential(nn.Linear(d_in, out_dim), nn.SiLU()))
            elif i == 0:
                blocks.append(nn.Sequential(nn.Linear(d_in, width), nn.SiLU()))
            elif i < depth - 1:
                blocks.append(nn.Sequential(nn.Linear(width, width), nn.SiLU(), _NORMS[norm](width),
                                            nn.Dropout(dropout)))
            else:
                blocks.append(nn.Sequential(nn.Linear(width, width), nn.Dropout(dropout), nn.SiLU(),
                                            nn.Linear(width, out_dim)))
        self.blocks = nn.ModuleList(blocks)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            y = block(x)
            x = y + _match_width(x, y.shape[1])
        return x


class AffineResidualMLP(nn.Module):
    """An affine map plus a one-hidden-layer MLP correction that starts at zero, so training starts from the
    affine map (the paired MLP initialises it to the ridge solution). Attribute names are the artifact's keys."""

    def __init__(self, in_dim: int, out_dim: int, width: int, dropout: float):
        super().__init__()
        self.affine = nn.Linear(in_dim, out_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, out_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(x) + self.mlp(x)


class Discriminator(nn.Module):
    """MLP critic with `depth` Linear layers (LayerNorm + SiLU between hidden ones) and one scalar per row."""

    def __init__(self, dim: int, width: int = 1024, depth: int = 5):
        super().__init__()
        if depth < 2:
            raise AlignError(f"depth={depth}; a Discriminator needs at least 2 layers")
        layers: list[nn.Module] = [nn.Linear(dim, width)]
        for _ in range(depth - 2):
            layers += [nn.SiLU(), nn.Linear(width, width), nn.LayerNorm(width)]
        layers += [nn.SiLU(), nn.Linear(width, 1)]
        self.net = nn.Sequential(*layers)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def lsgan_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN critic loss: real scores -> 1, fake scores -> 0."""
    return 0.5 * (((d_real - 1) ** 2).mean() + (d_fake ** 2).mean())


def lsgan_generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN generator loss: make the critic score fakes as real (1)."""
    return 0.5 * ((d_fake - 1) ** 2).mean()


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cos between matching rows (reconstruction and cycle-consistency loss)."""
    return 1 - F.cosine_similarity(pred, target, dim=1).mean()


def vsp_loss(inputs: torch.Tensor, outputs: torch.Tensor, reflected: bool = True) -> torch.Tensor:
    """Vector-space preservation: mean L1 gap between in-batch cosine-similarity matrices of rows and images.

    `inputs` is treated as a constant. With `reflected` (as released by vec2vec) the cross matrix
    outputs @ inputs.T is also pulled towards the input one, which only makes sense when both live in the
    same space (reconstructions, cycle outputs).
    """
    a = F.normalize(inputs.detach(), dim=1)
    b = F.normalize(outputs, dim=1)
    sims = a @ a.T
    loss = (sims - b @ b.T).abs().mean()
    if reflected:
        loss = loss + (sims - b @ a.T).abs().mean()
    return loss
