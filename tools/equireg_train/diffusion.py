"""Gaussian diffusion training loss of improved DDPM / guided-diffusion: epsilon MSE plus,
with learn_sigma, the variational bound term with the mean stopped (the "hybrid" loss that
trains the interpolated log-variance the sampler's learned-range mode reads)."""
import math

import numpy as np
import torch


def linear_betas(n):
    scale = 1000.0 / n
    return np.linspace(scale * 1e-4, scale * 0.02, n, dtype=np.float64)


class Diffusion:
    def __init__(self, n=1000, device="cpu"):
        b = linear_betas(n)
        acp = np.cumprod(1.0 - b)
        acp_prev = np.append(1.0, acp[:-1])
        post_var = b * (1.0 - acp_prev) / (1.0 - acp)

        def t_(a):
            return torch.tensor(a, dtype=torch.float32, device=device)

        self.n = n
        # VE-equivalent noise level of each timestep, in units of the [-1, 1] data.
        self.sigmas = np.sqrt((1.0 - acp) / acp)
        self.sqrt_acp = t_(np.sqrt(acp))
        self.sqrt_1m_acp = t_(np.sqrt(1.0 - acp))
        self.sqrt_recip_acp = t_(np.sqrt(1.0 / acp))
        self.sqrt_recipm1_acp = t_(np.sqrt(1.0 / acp - 1.0))
        self.post_log_var = t_(np.log(np.append(post_var[1], post_var[1:])))
        self.log_betas = t_(np.log(b))
        self.coef1 = t_(b * np.sqrt(acp_prev) / (1.0 - acp))
        self.coef2 = t_((1.0 - acp_prev) * np.sqrt(1.0 - b) / (1.0 - acp))

    @staticmethod
    def _at(a, t):
        return a[t][:, None, None, None]

    def q_sample(self, x0, t, noise):
        return self._at(self.sqrt_acp, t) * x0 + self._at(self.sqrt_1m_acp, t) * noise

    def sample_t(self, n, lognormal_frac=0.0, p_mean=-1.2, p_std=1.2, device="cpu"):
        """Timesteps: a fraction `lognormal_frac` from EDM's training distribution
        (ln sigma ~ N(p_mean, p_std^2), sigma clamped to the schedule's range and mapped to the
        timestep of nearest ln sigma), the rest uniform over 0..n-1."""
        t = torch.randint(0, self.n, (n,))
        if lognormal_frac > 0:
            pick = torch.rand(n) < lognormal_frac
            log_sigma = torch.randn(n, dtype=torch.float64) * p_std + p_mean
            ls = torch.from_numpy(np.log(self.sigmas))
            log_sigma = log_sigma.clamp(float(ls[0]), float(ls[-1]))
            hi = torch.searchsorted(ls, log_sigma).clamp(1, self.n - 1)
            nearest = torch.where((log_sigma - ls[hi - 1]) < (ls[hi] - log_sigma), hi - 1, hi)
            t = torch.where(pick, nearest, t)
        return t.to(device)

    def loss(self, model, x0, learn_sigma=True, t=None, autocast=None):
        n = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.n, (n,), device=x0.device)
        noise = torch.randn_like(x0)
        xt = self.q_sample(x0, t, noise)
        if autocast is not None:
            with torch.autocast(x0.device.type, dtype=autocast):
                out = model(xt, t)
            out = out.float()
        else:
            out = model(xt, t)
        if not learn_sigma:
            mse = ((out - noise) ** 2).mean()
            return mse, mse.detach(), torch.zeros(())
        eps, v = out.chunk(2, dim=1)
        mse = ((eps - noise) ** 2).mean(dim=(1, 2, 3))
        vb = self.vb_bits(eps.detach(), v, x0, xt, t)
        return (mse + vb).mean(), mse.mean().detach(), vb.mean().detach()

    def vb_bits(self, eps, v, x0, xt, t):
        at = self._at
        true_mean = at(self.coef1, t) * x0 + at(self.coef2, t) * xt
        true_log_var = at(self.post_log_var, t)
        pred_x0 = at(self.sqrt_recip_acp, t) * xt - at(self.sqrt_recipm1_acp, t) * eps
        mean = at(self.coef1, t) * pred_x0 + at(self.coef2, t) * xt
        frac = (v + 1.0) / 2.0
        log_var = frac * at(self.log_betas, t) + (1.0 - frac) * at(self.post_log_var, t)
        kl = 0.5 * (-1.0 + log_var - true_log_var + torch.exp(true_log_var - log_var)
                    + (true_mean - mean) ** 2 * torch.exp(-log_var))
        kl = kl.mean(dim=(1, 2, 3)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var).mean(dim=(1, 2, 3)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)


def _approx_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = _approx_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
