"""Our own encoder core: ModernBERT and BERT on packed (unpadded) batches, loaded from checkpoint folders."""

from encoders.core.encoder import CoreEncoder
from encoders.core.loading import load_checkpoint

__all__ = ["CoreEncoder", "load_checkpoint"]
