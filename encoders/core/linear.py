"""Linear layers for inference on CPU through oneDNN, where the encoder core spends most of its CPU time.

PyTorch's `F.linear` on CPU calls MKL's sgemm, which does not take its fastest code path on every CPU (AMD ones
among them). oneDNN ships inside PyTorch and is what TorchInductor lowers linear
layers to on CPU; we call that kernel directly, in fp32, with the bias and GELU fused into the matmul. Anything
else (training, CUDA, other dtypes, a PyTorch build without oneDNN) runs the plain `F.linear` path; both agree
to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# activation name in checkpoint configs -> function (the one table for the BERT and ModernBERT cores)
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "relu": F.relu,
}
# the ones oneDNN applies inside the matmul: name -> (post-op, algorithm)
FUSED_ACTIVATIONS = {"gelu": ("gelu", "none"), "gelu_new": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh")}


def _probe() -> bool:
    """Whether this PyTorch build runs oneDNN's fused linear and agrees with `F.linear` (checked once)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x, w, b = torch.randn(3, 8), torch.randn(4, 8), torch.randn(4)
        with torch.inference_mode():
            return bool(torch.allclose(op(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-5))
    except (AttributeError, RuntimeError):
        return False


ONEDNN = torch.backends.mkldnn.is_available() and _probe()


class CoreLinear(nn.Linear):
    """`nn.Linear` (same parameters and state-dict keys) followed by an optional activation from `ACTIVATIONS`,
    run by oneDNN when the input is an fp32 CPU tensor outside autograd (GELU fused into the matmul, other
    activations applied after it), by `F.linear` otherwise."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str | None = None):
        super().__init__(in_features, out_features, bias=bias)
        self.activation = activation
        self._act = ACTIVATIONS[activation] if activation else None
        self._post_op, self._algorithm = FUSED_ACTIVATIONS.get(activation, ("none", ""))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled() \
                and self.weight.dtype == torch.float32:
            flat = x.reshape(-1, x.shape[-1])
            out = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, self._post_op, [],
                                                     self._algorithm).reshape(*x.shape[:-1], self.out_features)
            if self._post_op != "none":  # the activation already ran inside the matmul
                return out
        else:
            out = F.linear(x, self.weight, self.bias)
        return self._act(out) if self._act else out
