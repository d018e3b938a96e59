"""BERT on packed sequences: absolute positions, post-norm layers, GELU; runs the BERT-family built-ins (minilm-l6).

Attribute names mirror the checkpoint's state-dict keys, so weights load with a plain `load_state_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from encoders.core.attention import Plan, varlen_attention
from encoders.core.linear import ACTIVATIONS, CoreLinear
from encoders.errors import EncoderError


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise EncoderError(
                f"BERT position_embedding_type {d['position_embedding_type']!r} is not supported; only 'absolute'"
            )
        if d.get("hidden_act", "gelu") not in ACTIVATIONS:
            raise EncoderError(
                f"BERT hidden_act {d['hidden_act']!r} is not supported; supported: {sorted(ACTIVATIONS)}"
            )
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if d.get(k) is not None})


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids, positions):
        # single-segment inputs: every token has token type 0
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.num_heads, self.head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        self.query = CoreLinear(c.hidden_size, c.hidden_size)
        self.key = CoreLinear(c.hidden_size, c.hidden_size)
        self.value = CoreLinear(c.hidden_size, c.hidden_size)

    def forward(self, x, plan: Plan):
        q, k, v = (m(x).view(x.shape[0], self.num_heads, self.head_dim) for m in (self.query, self.key, self.value))
        return varlen_attention(q, k, v, plan, local=False).reshape(x.shape)


class BertOutput(nn.Module):
    """Post-norm residual: LayerNorm(residual + dense(x)); names match both `attention.output` and `output`."""

    def __init__(self, c: BertConfig, d_in: int):
        super().__init__()
        self.dense = CoreLinear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(residual + self.dense(x))


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertOutput(c, c.hidden_size)

    def forward(self, x, plan):
        return self.output(self.self(x, plan), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        # the activation runs inside the linear layer: fused into the matmul where oneDNN can (GELU)
        self.dense = CoreLinear(c.hidden_size, c.intermediate_size, activation=c.hidden_act)

    def forward(self, x):
        return self.dense(x)


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c, c.intermediate_size)

    def forward(self, x, plan):
        x = self.attention(x, plan)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))


class BertModel(nn.Module):
    """(total_tokens,) token ids + a packing `Plan` -> (total_tokens, hidden) last hidden states (no pooler)."""

    window = None  # global attention only

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids: torch.Tensor, plan: Plan) -> torch.Tensor:
        x = self.embeddings(input_ids, plan.positions)
        for layer in self.encoder.layer:
            x = layer(x, plan)
        return x
