"""How a prompt reaches the picture (README chapter 13, "The text encoder" and "Cross-attention").

The text encoder turns a prompt's token ids into one vector per token: a learned row per word,
plus a learned row per position (so "thick" before the digit and "left" after it are told
apart), then one or two transformer layers in which every token looks at every other, so that
the vector of "seven" can carry "thin" with it. It is trained together with the denoiser.
Stable Diffusion instead freezes the text half of CLIP, a transformer trained elsewhere to match
400 million captions with their images: it arrives already knowing what words look like, and
the denoiser only learns to listen to it.

Cross-attention lets every pixel of the UNet's features look up the words. With the features h
as P = H x W pixels of C channels and the tokens as L vectors of D numbers,
    Q = W_Q h  (P x d),   K = W_K tokens  (L x d),   V = W_V tokens  (L x d),
    out = softmax(Q K^T / sqrt(d)) V  (P x d),   h + W_O out  (back to P x C),
the softmax over the L tokens, padding left out: each pixel takes a weighted mean of the words'
values, weighted by how well its query matches each word's key.
"""
import math

import torch
from torch import nn

from unet import GROUPS


class TextEncoder(nn.Module):
    """tau(y): token ids (n, L) -> token vectors (n, L, dim), and the mask (n, L) of real tokens
    (True) against padding (False)."""

    def __init__(self, vocabulary_size, max_tokens, dim=48, layers=1, heads=2, pad_id=0):
        super().__init__()
        self.pad_id = pad_id
        self.token = nn.Embedding(vocabulary_size, dim)
        self.position = nn.Embedding(max_tokens, dim)
        # Pre-norm layers (self-attention, then an MLP of 4 x dim, each added back), as in CLIP's.
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens):
        mask = tokens != self.pad_id                                        # (n, L)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.position(positions)                   # (n, L, dim)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)                        # padding is never looked at
        return self.norm(x), mask


class CrossAttention(nn.Module):
    """Image features (n, C, H, W) attend to token vectors (n, L, context_dim), one head of width
    dim, residual. The output projection starts at zero: an untrained block passes h unchanged."""

    def __init__(self, channels, context_dim, dim=None):
        super().__init__()
        dim = dim or channels
        self.scale = 1.0 / math.sqrt(dim)
        self.norm = nn.GroupNorm(GROUPS, channels)
        self.query = nn.Linear(channels, dim, bias=False)
        self.key = nn.Linear(context_dim, dim, bias=False)
        self.value = nn.Linear(context_dim, dim, bias=False)
        self.out = nn.Linear(dim, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h, context, mask, maps=None):
        """h + attention output (n, C, H, W); `maps`, a list, receives the weights (n, H, W, L)."""
        n, c, height, width = h.shape
        pixels = self.norm(h).reshape(n, c, height * width).transpose(1, 2)   # (n, P, C)
        q = self.query(pixels)                                                # (n, P, d)
        k, v = self.key(context), self.value(context)                         # (n, L, d) each
        scores = q @ k.transpose(1, 2) * self.scale                           # (n, P, L)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))         # padding: weight 0
        weights = scores.softmax(dim=-1)                                      # each pixel's row sums to 1
        if maps is not None:
            maps.append(weights.detach().reshape(n, height, width, -1))
        out = self.out(weights @ v)                                           # (n, P, d) -> (n, P, C)
        return h + out.transpose(1, 2).reshape(n, c, height, width)
