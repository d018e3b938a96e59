"""ModernBERT on packed sequences: pre-norm layers, fused Wqkv, RoPE, alternating global / local attention, GeGLU.

Attribute names mirror the checkpoint's state-dict keys, so weights load with a plain `load_state_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from encoders.core.attention import Plan, varlen_attention
from encoders.core.linear import ACTIVATIONS, CoreLinear
from encoders.errors import EncoderError


@dataclass
class ModernBertConfig:
    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    norm_eps: float = 1e-5
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    max_position_embeddings: int = 8192
    pad_token_id: int = 50283
    window: int = 64  # one-sided: a local-layer token sees positions i - window .. i + window
    global_rope_theta: float = 160_000.0
    local_rope_theta: float = 10_000.0
    layer_types: list[str] = field(default_factory=list)  # "global" / "local" per layer

    def __post_init__(self):
        if not self.layer_types:
            self.layer_types = ["global" if i % 3 == 0 else "local" for i in range(self.num_hidden_layers)]
        if len(self.layer_types) != self.num_hidden_layers:
            raise EncoderError(
                f"ModernBERT config lists {len(self.layer_types)} layer types for {self.num_hidden_layers} layers"
            )
        if self.hidden_activation not in ACTIVATIONS:
            raise EncoderError(
                f"ModernBERT hidden_activation {self.hidden_activation!r} is not supported; "
                f"supported: {sorted(ACTIVATIONS)}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> ModernBertConfig:
        """Read config.json as the original checkpoints write it (`global_attn_every_n_layers`,
        `local_attention`, `global_rope_theta`) or as transformers 5 does (`layer_types`, `rope_parameters`)."""
        n = d["num_hidden_layers"]
        if d.get("layer_types"):
            kinds = {"full_attention": "global", "sliding_attention": "local"}
            layer_types = [kinds.get(t, t) for t in d["layer_types"]]
        else:
            every = d.get("global_attn_every_n_layers") or 3
            layer_types = ["global" if i % every == 0 else "local" for i in range(n)]
        if d.get("local_attention") is not None:
            window = int(d["local_attention"]) // 2  # the total window: 128 means +-64
        elif d.get("sliding_window") is not None:
            window = int(d["sliding_window"])  # transformers' one-sided half window
        else:
            window = 64
        rope = d.get("rope_parameters") or {}
        for kind, params in rope.items():
            if params and params.get("rope_type", "default") != "default":
                raise EncoderError(f"RoPE type {params['rope_type']!r} ({kind}) is not supported; only 'default'")
        global_theta = (rope.get("full_attention") or {}).get("rope_theta") or d.get("global_rope_theta") or 160_000.0
        if (rope.get("sliding_attention") or {}).get("rope_theta"):
            local_theta = rope["sliding_attention"]["rope_theta"]
        elif "local_rope_theta" in d:
            # the original code falls back to the global theta when local_rope_theta is null
            local_theta = d["local_rope_theta"] or global_theta
        else:
            local_theta = 10_000.0
        keys = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "hidden_activation",
                "norm_eps", "norm_bias", "attention_bias", "mlp_bias", "max_position_embeddings", "pad_token_id")
        kw = {k: d[k] for k in keys if d.get(k) is not None}
        return cls(num_hidden_layers=n, window=window, global_rope_theta=float(global_theta),
                   local_rope_theta=float(local_theta), layer_types=layer_types, **kw)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, 1, head_dim), always fp32: bf16 angles lose whole radians at position 8k."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.float()[:, None] * inv_freq
    angles = torch.cat((angles, angles), dim=-1)[:, None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


class ModernBertEmbeddings(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def forward(self, input_ids):
        return self.norm(self.tok_embeddings(input_ids))


class ModernBertAttention(nn.Module):
    def __init__(self, config: ModernBertConfig, local: bool):
        super().__init__()
        self.local = local
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.Wqkv = CoreLinear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = CoreLinear(config.hidden_size, config.hidden_size, bias=config.attention_bias)

    def forward(self, x, plan: Plan, rope):
        q, k, v = self.Wqkv(x).view(x.shape[0], 3, self.num_heads, self.head_dim).unbind(1)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.Wo(varlen_attention(q, k, v, plan, self.local).reshape(x.shape[0], -1))


class ModernBertMLP(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.act = ACTIVATIONS[config.hidden_activation]
        self.Wi = CoreLinear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.Wo = CoreLinear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x):
        inp, gate = self.Wi(x).chunk(2, dim=-1)
        return self.Wo(self.act(inp) * gate)


class ModernBertLayer(nn.Module):
    def __init__(self, config: ModernBertConfig, i: int):
        super().__init__()
        self.local = config.layer_types[i] == "local"
        # layer 0 reads the already-normalised embeddings, so it has no attention norm (and no weights for one)
        norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.attn_norm = nn.Identity() if i == 0 else norm
        self.attn = ModernBertAttention(config, self.local)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.mlp = ModernBertMLP(config)

    def forward(self, x, plan, ropes):
        x = x + self.attn(self.attn_norm(x), plan, ropes[self.local])
        return x + self.mlp(self.mlp_norm(x))


class ModernBertModel(nn.Module):
    """(total_tokens,) token ids + a packing `Plan` -> (total_tokens, hidden) final hidden states."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.config = config
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(ModernBertLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    @property
    def window(self) -> int | None:
        return self.config.window if "local" in self.config.layer_types else None

    def forward(self, input_ids: torch.Tensor, plan: Plan) -> torch.Tensor:
        c = self.config
        head_dim = c.hidden_size // c.num_attention_heads
        # computed once per batch, indexed by `layer.local`
        ropes = (rope_tables(plan.positions, head_dim, c.global_rope_theta),
                 rope_tables(plan.positions, head_dim, c.local_rope_theta))
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, plan, ropes)
        return self.final_norm(x)
