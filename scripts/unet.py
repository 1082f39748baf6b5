"""The network of chapters 8, 9, 12 and 13: a small UNet that predicts the noise eps of an image.
README chapter 8, "The network".

Chapter 5's eps-network was an MLP on 2 numbers. An image is 64 numbers, but they are not 64
unrelated coordinates: neighbouring pixels belong to the same stroke. A UNet uses that:
- convolutions look at 3 x 3 neighbourhoods with the same weights everywhere in the image;
- the image is halved twice (8 x 8 -> 4 x 4 -> 2 x 2), so the lowest level sees the whole digit,
  then doubled back, each level handed the same-sized features from the way down (skip
  connections), so fine detail need not squeeze through the 2 x 2 bottleneck;
- the step t enters every block through a sinusoidal embedding and a small MLP: one smooth code
  for every t, where chapter 2's network had a table of per-step biases (a table of T rows per
  layer grows with T and says nothing about a step it did not train on; nearby steps need nearly
  the same network, and a smooth code gives them nearby inputs);
- the output convolution starts at zero, so training starts from eps = 0, as chapter 2's did.

The same module takes other images by its constructor's arguments: `channels` (1 for grey
pixels, 4 for chapter 12's latents) and `size` (8 for chapter 8's digits, 28 for MNIST pixels, 7
for 7 x 7 latents). The three levels are then size, size / 2 and size / 4, rounded up
(28 -> 14 -> 7, 7 -> 4 -> 2), and each way up is resized to the skip's size, so odd sizes work.
The defaults build chapter 8's UNet, its parameters and outputs unchanged.

With n_classes (chapter 9) a label embedding of n_classes + 1 rows is added to the time
embedding; the last row, `null_label`, means "no label", which is also what label=None gives.

With `text` (chapter 13: a dict of text_encoder.TextEncoder's arguments) the UNet holds a text
encoder, and after every residual block a cross-attention block lets each pixel of the features
look up the prompt's tokens (text_encoder.CrossAttention); forward then takes `tokens`, the
prompt's ids. Without it (the default) nothing of this is built and the UNet is as before.
"""
import torch
from torch import nn

from model import sinusoidal_embedding

GROUPS = 8          # GroupNorm groups: statistics over channel groups work at any batch size


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3 x 3 convolution, twice, the time code added in between as one bias per
    channel, and the input added back (through a 1 x 1 convolution when the channels change).
    Dropout, if any, before the second convolution (as in DDPM)."""

    def __init__(self, channels_in, channels_out, time_dim, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.GroupNorm(GROUPS, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.time = nn.Linear(time_dim, channels_out)
        self.norm2 = nn.GroupNorm(GROUPS, channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Identity() if channels_in == channels_out else nn.Conv2d(channels_in, channels_out, 1)

    def forward(self, x, code):
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.time(code)[:, :, None, None]
        h = self.conv2(self.dropout(nn.functional.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Every position of the 2 x 2 level looks at every other (one head, residual): whether the
    digit's four corners need to talk beyond what convolutions give is measured in docs/chapter8.md."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, channels)
        self.attention = nn.MultiheadAttention(channels, num_heads=1, batch_first=True)

    def forward(self, x):
        n, c, h, w = x.shape
        tokens = self.norm(x).reshape(n, c, h * w).transpose(1, 2)
        out, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class UNet(nn.Module):
    """eps_theta(x_t, t[, label]) for images (n, channels, size, size), by default chapter 8's
    (n, 1, 8, 8): three resolutions, size x size with base_channels, size/2 and size/4 with twice
    as many, a residual block on each level down and up, skip connections between equal
    resolutions, optional self-attention at the lowest level. The names say chapter 8's sizes
    (down8, to4, ...): they are the weights' names in its checkpoints."""

    def __init__(self, base_channels=32, n_classes=None, attention=False, time_dim=None,
                 max_period=10_000.0, dropout=0.0, channels=1, size=8, text=None):
        super().__init__()
        time_dim = time_dim or 4 * base_channels
        self.config = {"base_channels": base_channels, "n_classes": n_classes, "attention": attention,
                       "time_dim": time_dim, "max_period": max_period, "dropout": dropout,
                       "channels": channels, "size": size, "text": text}
        c1, c2 = base_channels, 2 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim))
        self.n_classes = n_classes
        if n_classes is not None:
            self.null_label = n_classes
            self.label_embedding = nn.Embedding(n_classes + 1, time_dim)
        self.input = nn.Conv2d(channels, c1, 3, padding=1)
        self.down8 = ResBlock(c1, c1, time_dim, dropout)
        self.to4 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)       # 8 x 8 -> 4 x 4 (28 -> 14, 7 -> 4)
        self.down4 = ResBlock(c1, c2, time_dim, dropout)
        self.to2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)       # 4 x 4 -> 2 x 2 (14 -> 7, 4 -> 2)
        self.middle1 = ResBlock(c2, c2, time_dim, dropout)
        self.attention = SelfAttention(c2) if attention else None
        self.middle2 = ResBlock(c2, c2, time_dim, dropout)
        self.up4 = ResBlock(c2 + c2, c2, time_dim, dropout)                 # after 2 x 2 -> 4 x 4, + skip
        self.up8 = ResBlock(c2 + c1, c1, time_dim, dropout)                 # after 4 x 4 -> 8 x 8, + skip
        self.output_norm = nn.GroupNorm(GROUPS, c1)
        self.output = nn.Conv2d(c1, channels, 3, padding=1)
        self.text_encoder = self.cross = None
        if text is not None:
            from text_encoder import CrossAttention, TextEncoder   # here: text_encoder uses GROUPS
            self.text_encoder = TextEncoder(**text)
            dim = self.text_encoder.token.embedding_dim
            # one after each block, in forward's order: down8, down4, middle1, middle2, up4, up8
            self.cross = nn.ModuleList(CrossAttention(c, dim) for c in (c1, c2, c2, c2, c2, c1))
        # Zero output: training starts from eps = 0 for every input, as chapter 2's network did.
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def embed(self, t, label, batch, device):
        """The code every block receives: MLP(sinusoidal(t)), plus the label's row when conditional."""
        t = torch.as_tensor(t, device=device).expand(batch)
        code = self.time_mlp(sinusoidal_embedding(t, self.config["base_channels"],
                                                  self.config["max_period"]).to(device))
        if self.n_classes is None:
            if label is not None:
                raise ValueError("this UNet is unconditional (n_classes=None): it takes no label")
            return code
        if label is None:
            label = torch.full((batch,), self.null_label, dtype=torch.long, device=device)
        return code + self.label_embedding(torch.as_tensor(label, device=device).expand(batch))

    def forward(self, x_t, t, label=None, record=None, tokens=None, maps=None):
        """eps (n, channels, size, size) for x_t of that shape at steps t ((n,) or one number);
        label (n,) of 0..n_classes - 1 or null_label, or None. `record`, a list, receives
        (stage, shape) pairs: the script prints them once so a reader sees the resolutions.
        tokens (n, L), a prompt's ids, for a UNet with text; `maps`, a list, then receives each
        cross-attention block's weights (n, height, width, L)."""
        def seen(stage, h):
            if record is not None:
                side = h.shape[-1]
                record.append((stage.format(f"{side}x{side}"), tuple(h.shape)))
            return h

        def up(h, skip):   # nearest-neighbour to the skip's size: 2 -> 4 -> 8, or 2 -> 4 -> 7
            return nn.functional.interpolate(h, size=skip.shape[-2:], mode="nearest")

        code = self.embed(t, label, x_t.shape[0], x_t.device)
        attend = self.reader(tokens, maps)
        seen("input x_t", x_t)
        h8 = seen("{} block", attend(0, self.down8(self.input(x_t), code)))   # (n, c1, size, size)
        h4 = seen("{} block", attend(1, self.down4(self.to4(h8), code)))      # (n, c2, size/2, size/2)
        h = seen("{} block", attend(2, self.middle1(self.to2(h4), code)))     # (n, c2, size/4, size/4)
        if self.attention is not None:
            h = seen("{} attention", self.attention(h))
        h = seen("{} block", attend(3, self.middle2(h, code)))
        h = seen("{} block (with skip)", attend(4, self.up4(torch.cat([up(h, h4), h4], dim=1), code)))
        h = seen("{} block (with skip)", attend(5, self.up8(torch.cat([up(h, h8), h8], dim=1), code)))
        return seen("output eps", self.output(nn.functional.silu(self.output_norm(h))))


    def reader(self, tokens, maps):
        """attend(i, h): h through cross-attention block i to the prompt's encoded tokens (the
        encoder runs once per call of forward), or h itself for a UNet without text."""
        if self.text_encoder is None:
            if tokens is not None:
                raise ValueError("this UNet has no text encoder (text=None): it takes no tokens")
            return lambda i, h: h
        if tokens is None:
            raise ValueError("this UNet reads a prompt: give its tokens (the empty prompt for none)")
        context, mask = self.text_encoder(tokens)                       # (n, L, dim), (n, L)
        return lambda i, h: self.cross[i](h, context, mask, maps)


def n_parameters(model):
    """The number of trained numbers in a model."""
    return sum(p.numel() for p in model.parameters())
