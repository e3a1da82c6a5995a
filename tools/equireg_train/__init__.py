"""Training code shared by tools/train_prior.py and tools/train_mpe.py (PyTorch only; no
deepinv, so that it also runs on a bare GPU machine with just torch)."""
