"""Fine-tune a pretrained Transformer on GLUE SST-2 with a hand-written PyTorch loop, as DVC stages."""

__version__ = "0.1.0"
