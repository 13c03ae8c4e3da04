"""DDPM / DDIM maths (plain torch; one schedule object shared by training and sampling).

The network predicts either the noise eps (DDPM's parameterisation) or the clean mask x0 directly
(``DiffusionConfig.parameterisation``); sampling turns either into an x0 estimate and steps from there.

Noise for sampling is drawn through :class:`NoiseSource`, one seeded generator per (crop, sample), so
a batched sampler and a one-sample-at-a-time loop consume identical noise and give the same masks.
"""
from __future__ import annotations

import numpy as np
import torch

from .config import DiffusionConfig
from .losses import bce_dice


class Diffusion:
    """Linear-beta DDPM schedule with the forward process, the training loss and reverse steps."""

    def __init__(self, cfg: DiffusionConfig = DiffusionConfig()):
        self.cfg = cfg
        self.T = cfg.timesteps
        betas = np.linspace(cfg.beta_start, cfg.beta_end, self.T, dtype=np.float64)
        if not (0 < betas).all() or not (betas < 1).all():
            raise ValueError(f"betas out of (0, 1) for T={self.T}: use T >= 21 with the SegDiff scaling")
        abar = np.cumprod(1.0 - betas)
        self.betas = betas
        self.alphas_cumprod = abar
        self.abar_prev = np.append(1.0, abar[:-1])
        # posterior q(x_{t-1} | x_t, x_0): mean = c0 * x0 + ct * x_t, variance beta_tilde
        self.post_var = betas * (1.0 - self.abar_prev) / (1.0 - abar)
        self.post_c0 = betas * np.sqrt(self.abar_prev) / (1.0 - abar)
        self.post_ct = (1.0 - self.abar_prev) * np.sqrt(1.0 - betas) / (1.0 - abar)

    @staticmethod
    def _at(arr: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Gather schedule values at ``t`` (B,) shaped to broadcast against ``like``."""
        v = torch.as_tensor(arr, dtype=like.dtype, device=like.device)[t]
        return v.reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        return self._at(np.sqrt(self.alphas_cumprod), t, x0) * x0 + self._at(np.sqrt(1 - self.alphas_cumprod), t, x0) * noise

    @property
    def predicts_x0(self) -> bool:
        return self.cfg.parameterisation in ("x0", "logit")

    def loss(self, model, x0: torch.Tensor, cond: torch.Tensor, gen: torch.Generator, weight: torch.Tensor | None = None,
             fg_weight: float = 1.0, t_max_fraction: float = 0.0, world=None) -> torch.Tensor:
        """MSE of the network's target (eps or x0) at uniformly drawn t (noise and t from ``gen``).

        ``weight`` masks padding; ``fg_weight`` multiplies the error on foreground bins (x0 > 0), which
        are ~5% of a mask and otherwise weigh little in the mean (``logit``: BCE + Dice, ``fg_weight`` = BCE pos_weight).
        ``t_max_fraction``: that share of the batch is trained at t = T-1 instead of a uniform draw.
        ``world`` (``training.distributed.World``): ``x0`` is this rank's part of the global batch; t and noise are
        drawn for the whole batch and sliced, and the loss made that of the whole batch, so N ranks reproduce one
        process."""
        n = x0.shape[0] * (world.size if world else 1)
        t = torch.randint(0, self.T, (n,), generator=gen)
        t[: round(t_max_fraction * n)] = self.T - 1  # pure noise: the condition alone must carry these
        noise = torch.randn((n, *x0.shape[1:]), generator=gen, dtype=x0.dtype)
        if world is not None:
            part = world.part(n)
            t, noise = t[part], noise[part]
        t, noise = t.to(x0.device), noise.to(x0.device)
        out = model(self.q_sample(x0, t, noise), t, cond)
        if self.cfg.parameterisation == "logit":
            valid = torch.ones_like(x0[..., :1]) if weight is None else weight
            return bce_dice(out, (x0 + 1) / 2, valid, pos_weight=fg_weight, dice_weight=1.0, world=world)
        err = (out - (x0 if self.predicts_x0 else noise)) ** 2
        w = torch.ones_like(err) if weight is None else weight.expand_as(err)
        if fg_weight != 1.0:
            w = w * torch.where(x0 > 0, fg_weight, 1.0)
        loss = (err * w).sum() / w.sum().clamp_min(1.0)
        return loss if world is None else loss * world.share(w.sum())

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """x0 from the network output (eps, or x0 itself), clipped to the mask range [-1, 1]."""
        if self.cfg.parameterisation == "logit":
            return torch.tanh(out / 2)
        if self.predicts_x0:
            return out.clamp(-1, 1)
        ab = self._at(self.alphas_cumprod, t, x_t)
        return ((x_t - torch.sqrt(1 - ab) * out) / torch.sqrt(ab)).clamp(-1, 1)

    def timesteps(self, ddim_steps: int | None) -> list[int]:
        """Descending timesteps: all T for DDPM, or ``ddim_steps`` evenly spaced ones for DDIM."""
        if ddim_steps is None or ddim_steps >= self.T:
            return list(range(self.T - 1, -1, -1))
        if ddim_steps < 1:
            raise ValueError(f"ddim_steps must be >= 1, got {ddim_steps}")
        # evenly spaced from the pure-noise end T-1 (so one step is t = T-1, a prediction from the condition alone)
        ts = np.unique(np.round(np.linspace(self.T - 1, 0, ddim_steps)).astype(int))
        return [int(v) for v in ts[::-1]]

    def needs_noise(self, i: int, steps: list[int], ddim: bool, eta: float) -> bool:
        """Whether reverse step ``i`` of ``steps`` adds fresh noise (never on the last step)."""
        return i < len(steps) - 1 and (not ddim or eta > 0)

    def step(self, x_t, out, t: int, t_prev: int, noise, ddim: bool, eta: float = 0.0) -> torch.Tensor:
        """One reverse step x_t -> x_{t_prev} from the network output ``out``: the DDPM posterior, or DDIM (eta=0 deterministic)."""
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
        x0 = self.predict_x0(x_t, tt, out)
        if t_prev < 0:
            return x0
        if not ddim:
            mean = self._at(self.post_c0, tt, x_t) * x0 + self._at(self.post_ct, tt, x_t) * x_t
            return mean + self._at(np.sqrt(self.post_var), tt, x_t) * noise
        ab, ab_prev = float(self.alphas_cumprod[t]), float(self.alphas_cumprod[t_prev])
        eps_hat = (x_t - np.sqrt(ab) * x0) / np.sqrt(1 - ab)  # eps consistent with the clipped x0
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        out = np.sqrt(ab_prev) * x0 + np.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps_hat
        return out + sigma * noise if noise is not None and sigma > 0 else out


class NoiseSource:
    """One ``torch.Generator`` per (crop, sample), seeded from (seed, key, crop, sample).

    Every consumer draws, per generator, x_T first and then one tensor per noisy reverse step, so
    batching samples or crops together does not change which noise each sample sees.
    """

    def __init__(self, seed: int, key: int, n_crops: int, n_samples: int):
        self.gens = [
            [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, key, c, s]).generate_state(1)[0])) for s in range(n_samples)]
            for c in range(n_crops)
        ]

    def draw(self, pairs: list[tuple[int, int]], shape: tuple[int, ...]) -> torch.Tensor:
        """Stack one ``shape`` draw from each (crop, sample) generator in ``pairs`` order."""
        return torch.stack([torch.randn(shape, generator=self.gens[c][s]) for c, s in pairs])
