"""The network behind p(x_{t-1} | x_t) (README, chapter 2): x_t and t in; out, a noise estimate
eps and a lower-triangular factor L of x0's covariance given x_t, which common.p_reverse turns
into the reverse step's mean and covariance. Also the sinusoidal embedding of a time that the
later networks (the UNet of chapter 8, the continuous-time network of chapter 11) use in place
of per-step biases.
"""
import math

import torch

import common

# What L may be: a whole lower triangle, its diagonal, or absent ("none": an eps-network only,
# whose reverse variance is chosen outside it, as in DDPM; README, chapter 5).
COVARIANCES = ("full", "diagonal", "none")


class ReverseModel(torch.nn.Module):
    """One MLP for every step, as in the paper; what is particular to step t is a learned bias
    added to each hidden layer (rows for t = 2..T only: step 1 is the fixed kernel of eq. 44).

    Outputs: eps (n, D), and L (n, D, D), lower-triangular with a positive diagonal, so that
    (1 - alpha_bar_t) L L^T is a valid covariance of x0 given x_t. With covariance="diagonal" L
    is diagonal (the paper's class, D outputs); with "full" it has D (D + 1) / 2 outputs; with
    "none" there is no L (None) and the network predicts eps alone."""

    def __init__(self, T=common.T, hidden=128, depth=3, n_frequencies=32, covariance="full"):
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}")
        self.config = {"T": T, "hidden": hidden, "depth": depth, "n_frequencies": n_frequencies,
                       "covariance": covariance}
        # Random Fourier features sin(x B), cos(x B), B ~ N(0, (2 pi)^2): they help a small MLP
        # draw sharp shapes, and the roll's arms must be located to within the noise of t = 2,
        # sqrt(2e-5) = 0.005 wide. Stored with the weights, so a checkpoint carries its B.
        self.register_buffer("frequencies", 2.0 * math.pi * torch.randn(common.D, n_frequencies))
        sizes = [common.D + 2 * n_frequencies] + [hidden] * depth
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        # step_bias[layer][t - 2]: one row per learned step t = 2..T
        self.step_bias = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(T - 1, hidden))
                                                for _ in range(depth))
        with torch.no_grad():
            self.step_bias[0].normal_(0.0, 0.5)  # the first layer: different steps start apart
        self.n_factor = {"full": common.D * (common.D + 1) // 2, "diagonal": common.D, "none": 0}[covariance]
        self.output = torch.nn.Linear(hidden, common.D + self.n_factor)
        # Zero output weights: training starts from eps = 0 and L = I, the values for Gaussian data.
        torch.nn.init.zeros_(self.output.weight)
        torch.nn.init.zeros_(self.output.bias)

    def forward(self, x_t, t):
        angles = x_t @ self.frequencies
        h = torch.cat([x_t, torch.sin(angles), torch.cos(angles)], dim=1)
        for layer, bias in zip(self.layers, self.step_bias):
            h = torch.nn.functional.silu(layer(h) + bias[t - 2])
        out = self.output(h)
        eps, raw = out[:, :common.D], out[:, common.D:]
        if self.n_factor == 0:
            return eps, None
        # L's diagonal is exp of the first D raw outputs (positive); the rest fill the lower triangle.
        factor = torch.diag_embed(torch.exp(raw[:, :common.D]))
        if self.n_factor > common.D:
            rows, cols = torch.tril_indices(common.D, common.D, offset=-1)
            below = torch.zeros_like(factor)
            below[:, rows, cols] = raw[:, common.D:]
            factor = factor + below
        return eps, factor


def sinusoidal_embedding(t, dim, max_period=10_000.0):
    """A time (any real number, one per row: (n,)) as dim numbers (n, dim): cos and sin of t at
    dim / 2 geometric frequencies, from 1 down to 1 / max_period (DDPM's, after the Transformer's).

    Unlike chapter 2's table of per-step biases, this is a smooth function of t: nearby steps
    get nearby codes, and a network can be asked at a t it never saw (chapter 11's continuous
    time). The inner product of two codes depends only on the gap between the times,
    sum_i cos(w_i (t - s)): the property tests/test_unet.py checks."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1) * frequencies.to(
        torch.as_tensor(t).device)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ContinuousTimeModel(torch.nn.Module):
    """Chapter 11's network: ReverseModel's body (random Fourier features of x, then an MLP), but
    asked at any real time instead of one of T steps. The time enters through
    sinusoidal_embedding(time_scale * time), one learned linear map of that code added to each
    hidden layer where ReverseModel adds its per-step bias. One output of D numbers: the noise
    estimate eps for the diffusion (time = log SNR), the velocity for flow matching (time = s).
    time_scale spreads the time's range over about a thousand units, as DDPM's steps are."""

    def __init__(self, hidden=128, depth=3, n_frequencies=32, time_dim=64, time_scale=1.0):
        super().__init__()
        self.config = {"hidden": hidden, "depth": depth, "n_frequencies": n_frequencies,
                       "time_dim": time_dim, "time_scale": time_scale}
        self.register_buffer("frequencies", 2.0 * math.pi * torch.randn(common.D, n_frequencies))
        sizes = [common.D + 2 * n_frequencies] + [hidden] * depth
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.time_layers = torch.nn.ModuleList(torch.nn.Linear(time_dim, hidden) for _ in range(depth))
        self.output = torch.nn.Linear(hidden, common.D)
        torch.nn.init.zeros_(self.output.weight)   # start from eps = 0 (or v = 0): Gaussian data's
        torch.nn.init.zeros_(self.output.bias)

    def forward(self, x, time):
        # the code is computed on the CPU (mps has no float64) and only then moved to x's device
        time = (time if torch.is_tensor(time) else torch.tensor(time, dtype=torch.float64)).cpu().double()
        code = sinusoidal_embedding(self.config["time_scale"] * time.expand(x.shape[0]), self.config["time_dim"]).to(x)
        angles = x @ self.frequencies
        h = torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1)
        for layer, time_layer in zip(self.layers, self.time_layers):
            h = torch.nn.functional.silu(layer(h) + time_layer(code))
        return self.output(h)
