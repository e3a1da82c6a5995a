"""Training batches of joint PDE fields ([N, 2, 64, 64] from tools/pde_data.py), normalised and
augmented with the problem's valid symmetry group.

Normalisation is per channel, x_norm = (x - mean) / std * 0.5 (FunDPS's convention: each
channel at standard deviation 0.5), with mean and std measured on the training file and
exported beside the weights so that the engine maps reconstructions back to physical units.

Augmentation draws one element of the group per sample and applies it to both channels at
once: `d4` (the eight flips and quarter turns of the square, exact for Darcy, Poisson and
Helmholtz on the symmetric vertex grid), `d4-sign` (D4 times the joint sign flip, exact for the
linear problems), `none`.
"""
import numpy as np
import torch


class FieldSampler:
    def __init__(self, path, group="d4", seed=0, device="cpu"):
        data = np.load(path, mmap_mode="r")
        if data.ndim != 4 or data.shape[1] != 2:
            raise SystemExit(f"{path}: expected [N, 2, H, W] fields, found shape {data.shape}")
        self.data = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        self.mean = self.data.mean(dim=(0, 2, 3))
        self.std = self.data.std(dim=(0, 2, 3))
        if group not in ("d4", "d4-sign", "none"):
            raise SystemExit(f"unknown augmentation group {group!r} (d4, d4-sign, none)")
        self.group = group
        self.device = device
        self.rng = np.random.default_rng(seed)

    def normalisation(self):
        return dict(mean=self.mean.tolist(), std=self.std.tolist(), scale=0.5)

    def normalise(self, x):
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None] * 0.5

    def batch(self, n):
        idx = self.rng.integers(0, self.data.shape[0], size=n)
        x = self.normalise(self.data[torch.from_numpy(idx)])
        out = []
        for i in range(n):
            c = x[i]
            if self.group != "none":
                c = torch.rot90(c, int(self.rng.integers(0, 4)), dims=(1, 2))
                if self.rng.integers(0, 2):
                    c = torch.flip(c, dims=(2,))
            out.append(c)
        x = torch.stack(out)
        if self.group == "d4-sign":
            # The sign flip acts on the physical fields: (f, u) -> (-f, -u) maps the normalised
            # field x to -x - 2 * mean / std * 0.5.
            s = torch.from_numpy(self.rng.choice([-1.0, 1.0], size=n).astype(np.float32))[:, None, None, None]
            offset = (self.mean / self.std * 0.5)[None, :, None, None]
            x = torch.where(s > 0, x, -x - 2 * offset)
        return x.to(self.device)
