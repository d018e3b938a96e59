"""Attention over packed (unpadded) sequences: tokens of a batch as (total_tokens, heads, head_dim) + `cu_seqlens`.

flash-attention's varlen kernel on CUDA when installed; elsewhere PyTorch SDPA on runs of equal-length sequences
(views of the packed tensor, no padding) and, for local layers, on blocks of queries with their +-window
neighbourhood, so no mask ever grows past one block's (BLOCK x (BLOCK + 2 window)), whatever L is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

try:  # optional: only the CUDA path uses it
    from flash_attn import flash_attn_varlen_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_varlen_func = None

# Queries per local block: each block reads BLOCK + 2 * window keys, so larger blocks waste less on the band's
# edges but more on its corners; 128 keeps the key span at 2x the band for the usual +-64 window.
BLOCK = 128


def use_flash(device: torch.device) -> bool:
    return flash_attn_varlen_func is not None and device.type == "cuda"


@dataclass
class Plan:
    """Index arrays for one packed batch, built once and shared by every layer of the model."""

    cu_seqlens: torch.Tensor  # (B + 1,) int32
    max_seqlen: int
    flash: bool
    groups: list[tuple[int, int, int]]  # (first token, sequences, length) per run of equal-length sequences
    local_groups: list[tuple[int, int, int, torch.Tensor | None]]  # runs of short sequences + their band mask
    blocks: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None  # local blocks, see _blocks
    window: int | None
    positions: torch.Tensor  # (T,) position of each token inside its sequence
    seq_ids: torch.Tensor  # (T,) which sequence each token belongs to, for pooling


def build_plan(seqlens: list[int], device: torch.device, window: int | None) -> Plan:
    """`window` is the one-sided local window (64 for ModernBERT) or None for a model with global layers only."""
    lengths = torch.tensor(seqlens, dtype=torch.int64)
    cu = torch.zeros(len(seqlens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, 0)
    flash = use_flash(device)
    seq_ids = torch.repeat_interleave(torch.arange(len(seqlens)), lengths)
    positions = torch.arange(int(cu[-1])) - cu[:-1].long()[seq_ids]
    plan = Plan(cu.to(device), int(max(seqlens)), flash, [], [], None, window, positions.to(device), seq_ids.to(device))
    if flash:
        return plan
    starts = cu[:-1].long()
    plan.groups = _runs(seqlens)
    if window is not None:
        # Up to one block's key span a sequence takes a dense band mask no bigger than one block's (and no mask
        # at all up to window + 1, where every token sees the whole sequence); longer ones go through blocks.
        short = lengths <= BLOCK + 2 * window
        band = _additive(_band(BLOCK + 2 * window, window, device))
        plan.local_groups = [(*g, None if g[2] <= window + 1 else band[:g[2], :g[2]])
                             for g in plan.groups if g[2] <= BLOCK + 2 * window]
        if not bool(short.all()):
            plan.blocks = _blocks(starts[~short], lengths[~short], window, device)
    return plan


def _runs(seqlens: list[int]) -> list[tuple[int, int, int]]:
    """Runs of consecutive equal-length sequences: each is one contiguous (n * L) slice of the packed tokens, a
    free view as (n, L); callers that sort by length (the encoder does) get few, large runs."""
    runs, start, i = [], 0, 0
    while i < len(seqlens):
        j = i
        while j < len(seqlens) and seqlens[j] == seqlens[i]:
            j += 1
        runs.append((start, j - i, seqlens[i]))
        start += (j - i) * seqlens[i]
        i = j
    return runs


def _band(length: int, window: int, device) -> torch.Tensor:
    pos = torch.arange(length, device=device)
    return (pos[:, None] - pos[None, :]).abs() <= window


def _additive(mask: torch.Tensor) -> torch.Tensor:
    """0 / -inf float mask: SDPA would otherwise convert a boolean one on every call of every layer."""
    return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))


def _blocks(starts, lengths, window, device):
    """Cut each long sequence into blocks of BLOCK queries; block b reads keys [s - window, s + BLOCK + window).

    Returns query indices (nb, BLOCK), key indices (nb, K), the (nb, 1, BLOCK, K) band mask, and which query
    slots are real tokens (a sequence's last block is partial).
    """
    span = BLOCK + 2 * window
    q_off, k_off, seq_start, seq_len = [], [], [], []
    for s, n in zip(starts.tolist(), lengths.tolist(), strict=True):
        b0 = torch.arange(0, n, BLOCK)
        q_off.append(b0[:, None] + torch.arange(BLOCK))
        k_off.append(b0[:, None] - window + torch.arange(span))
        seq_start += [s] * len(b0)
        seq_len += [n] * len(b0)
    q_off, k_off = torch.cat(q_off), torch.cat(k_off)
    seq_start, seq_len = torch.tensor(seq_start)[:, None], torch.tensor(seq_len)[:, None]
    q_real = q_off < seq_len
    k_real = (k_off >= 0) & (k_off < seq_len)
    band = (q_off[:, :, None] - k_off[:, None, :]).abs() <= window
    mask = (band & k_real[:, None, :])[:, None]
    # padded slots point at the sequence's own first token so gathers stay in range; the mask / q_real hide them
    q_idx = seq_start + torch.where(q_real, q_off, 0)
    k_idx = seq_start + torch.where(k_real, k_off, 0)
    return q_idx.to(device), k_idx.to(device), _additive(mask.to(device)), q_real.to(device)


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Plan, local: bool) -> torch.Tensor:
    """q, k, v: (T, heads, head_dim) -> (T, heads, head_dim); softmax scale 1/sqrt(head_dim)."""
    if plan.flash:
        w = plan.window if local else -1
        return flash_attn_varlen_func(
            q, k, v, plan.cu_seqlens, plan.cu_seqlens, plan.max_seqlen, plan.max_seqlen, window_size=(w, w)
        )
    out = torch.empty_like(q)
    for start, n, length, mask in plan.local_groups if local else [(*g, None) for g in plan.groups]:
        sl = slice(start, start + n * length)
        shape = (n, length) + q.shape[1:]
        o = _sdpa(q[sl].view(shape), k[sl].view(shape), v[sl].view(shape), mask)
        out[sl] = o.reshape(n * length, *q.shape[1:])
    if local and plan.blocks is not None:
        q_idx, k_idx, mask, q_real = plan.blocks
        o = _sdpa(q[q_idx], k[k_idx], v[k_idx], mask)
        out[q_idx[q_real]] = o[q_real]
    return out


def _sdpa(q, k, v, mask=None):
    # (n, L, heads, d) -> SDPA's (n, heads, L, d) and back
    if mask is not None and mask.dtype != q.dtype:  # CUDA without flash-attn runs this path in bf16
        mask = mask.to(q.dtype)
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return o.transpose(1, 2)
