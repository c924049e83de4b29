"""eSASRec: SASRec's next-item objective + LiGR layers + sampled softmax, in plain PyTorch."""

__version__ = "0.1.0"
