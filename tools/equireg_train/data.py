"""Random 64x64 training crops from the corpus built by tools/build_corpus.py.

A crop of side s (log-uniform between the output size and the photograph's short side) is
cut at a random place and downscaled to the output size with antialiasing, so that crops hold
objects and not only flat regions; then one of the eight dihedral transforms (flips and
90-degree rotations) is applied.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


class CropSampler:
    def __init__(self, corpus_path, size=64, seed=0, device="cpu", patch=None):
        # One .npz or several, comma-separated (the corpus is the union of their photographs).
        self.images = []
        for path in str(corpus_path).split(","):
            data = np.load(path)
            self.images += [torch.from_numpy(data[k]).permute(2, 0, 1).float().div(255.0) for k in sorted(data.files)]
        self.size = size
        # Patch training: a random patch x patch window of each crop (same pixel statistics as
        # the full crops, a quarter of the compute at patch = size / 2).
        self.patch = patch or size
        self.device = device
        areas = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def crop(self, patch=None):
        patch = patch or self.patch
        im = self.images[self.rng.choice(len(self.images), p=self.p)]
        _, h, w = im.shape
        short = min(h, w)
        side = int(round(self.size * 2.0 ** self.rng.uniform(0.0, math.log2(short / self.size))))
        side = max(self.size, min(side, short))
        top = self.rng.integers(0, h - side + 1)
        left = self.rng.integers(0, w - side + 1)
        c = im[:, top : top + side, left : left + side].unsqueeze(0)
        if side != self.size:
            c = F.interpolate(c, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        k = int(self.rng.integers(0, 4))
        c = torch.rot90(c, k, dims=(2, 3))
        if self.rng.integers(0, 2):
            c = torch.flip(c, dims=(3,))
        if patch != self.size:
            i, j = self.rng.integers(0, self.size - patch + 1, size=2)
            c = c[:, :, i : i + patch, j : j + patch]
        return c[0].clamp(0.0, 1.0)

    def batch(self, n, patch=None):
        """A batch in [-1, 1], the diffusion models' range; `patch` overrides the window size."""
        return torch.stack([self.crop(patch) for _ in range(n)]).to(self.device) * 2.0 - 1.0
