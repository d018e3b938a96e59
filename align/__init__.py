"""Translators between embedding spaces (vectors -> vectors), scikit-learn style, saved as JSON + safetensors.

`geometric` (default, unsupervised), `vec2vec` (the paper's GAN), and paired `procrustes` / `ridge` / `mlp`.
"""

from align.base import METHODS, Translator, default_method, translator_class
from align.errors import AlignError

__all__ = ["METHODS", "AlignError", "Translator", "default_method", "translator_class"]
