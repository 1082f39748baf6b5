"""The figures of the latent chapters: chapter 12's (digits beside their reconstructions, the latent
channels, the reverse process decoded, pixel against latent samples, the samplers) and chapter 13's
(prompts by guidance weight, image to image by strength, attention over the words). Each takes what
the chapter computed and writes one file; nothing here samples or trains.
"""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter

import checkpoints
import figures
import prompts

GREY = {"low": 0, "high": 255, "side": 28}   # MNIST's levels, 28 x 28


def reconstructions(heldout, rebuilt, channels, path):
    """Twelve held-out digits above their reconstructions."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 2.6))
    figures.show_digits(axes[0], heldout[:12], 12, "held-out digits", **GREY)
    figures.show_digits(axes[1], rebuilt[:12], 12, f"decoded from {channels}x7x7 latents", **GREY)
    figures.save_figure(fig, path)


def latent_channels(heldout, means, path):
    """Eight held-out digits above each channel of their latent means, each channel on its own scale."""
    c = means.shape[1]
    fig, axes = plt.subplots(c + 1, 1, figsize=(8, 1.3 * (c + 1)))
    figures.show_digits(axes[0], heldout[:8], 8, "held-out digits", **GREY)
    for k in range(c):
        channel = means[:8, k].numpy()
        figures.show_digits(axes[k + 1], channel, 8, f"latent channel {k + 1} (mean, 7x7)",
                            low=float(channel.min()), high=float(channel.max()), side=7)
    fig.tight_layout()
    figures.save_figure(fig, path)


def reverse_gif(frames, steps, path):
    """One frame per DDIM step: 16 chains' states, each decoded to pixels."""
    fig, ax = plt.subplots(figsize=(3.6, 3.9))
    animation = FuncAnimation(
        fig, lambda k: figures.show_digits(ax, frames[k], 4, f"DDIM step {k} of {steps}, decoded", **GREY),
        frames=len(frames))
    checkpoints.replace_atomically(path, lambda temporary: animation.save(
        temporary, writer=PillowWriter(fps=8), dpi=60))
    plt.close(fig)


def side_by_side(sets, path):
    """64 images of each set, `sets` a dict title -> images."""
    fig, axes = plt.subplots(1, len(sets), figsize=(13, 4.7))
    for ax, (title, images) in zip(axes, sets.items()):
        figures.show_digits(ax, images[:64], 8, title, **GREY)
    fig.tight_layout()
    figures.save_figure(fig, path)


def samplers(sampled, columns, path):
    """25 samples of each (solver, steps), one solver a row."""
    fig, axes = plt.subplots(2, columns, figsize=(11, 7.6))
    for (solver, steps), ax in zip(sampled, axes.flat):
        figures.show_digits(ax, sampled[solver, steps][:25], 5, f"{solver}, {steps} steps", **GREY)
    fig.tight_layout()
    figures.save_figure(fig, path)


def prompts_by_w(swept, repeats, shown, path):
    """The prompts `shown` (rows, as (digit, thickness, slant)), `repeats` samples at each w (columns),
    taken from the sweep's samples of all 160 prompts."""
    rows = prompts.table_row(*np.array(shown).T) - 1            # index among the 160 prompts
    fig, axes = plt.subplots(1, len(swept), figsize=(2.2 * len(swept), 5.2))
    for ax, (w, levels) in zip(np.atleast_1d(axes), swept.items()):
        cells = levels.reshape(repeats, 160, 28, 28)[:, rows].transpose(1, 0, 2, 3)
        figures.show_digits(ax, cells, repeats, f"w = {w:g} (s = {1 + w:g})", 0, 255, side=28)
    first = np.atleast_1d(axes)[0]                                # each row named by its prompt
    first.set_yticks([15 + 29 * r for r in range(len(shown))], [prompts.sentence(*p) for p in shown], fontsize=8)
    fig.subplots_adjust(left=0.22)
    figures.save_figure(fig, path)


def image_to_image(source, asked, edited, strengths, path):
    """Four source digits (rows), each redrawn at every strength (columns), named by its prompt."""
    fig, axes = plt.subplots(4, 1 + len(strengths), figsize=(1.3 * (1 + len(strengths)), 6.2))
    for r in range(4):
        for c, (levels, title) in enumerate([(source, "source")] + [(e, f"s = {s:g}") for s, e in zip(strengths, edited)]):
            figures.show_digits(axes[r, c], levels[r], 1, title if r == 0 else "", 0, 255, side=28)
        axes[r, 0].set_ylabel(prompts.sentence(*(int(a[r]) for a in asked)).replace(" slanted", "\nslanted"), fontsize=7)
    figures.save_figure(fig, path)


def attention(tokens, levels, seen, path):
    """Each prompt's sample, then the sample under each word's attention weights `seen`
    (n, 7, 7, tokens), the padding left out."""
    n = len(tokens)
    fig, axes = plt.subplots(n, 1 + prompts.MAX_TOKENS, figsize=(1.3 * (1 + prompts.MAX_TOKENS), 1.5 * n))
    for i, row in enumerate(tokens.tolist()):
        figures.show_digits(axes[i, 0], levels[i], 1, "sample", 0, 255, side=28)
        for j in range(1, 1 + prompts.MAX_TOKENS):
            axes[i, j].axis("off")
            if row[j - 1] != prompts.TOKEN_ID[prompts.PAD]:
                axes[i, j].imshow(levels[i], cmap="gray_r", vmin=0, vmax=255)
                axes[i, j].imshow(np.kron(seen[i, ..., j - 1], np.ones((4, 4)))[:28, :28], cmap="magma",
                                  alpha=0.6, vmin=0, vmax=seen[i].max())
                axes[i, j].set_title(prompts.VOCABULARY[row[j - 1]], fontsize=8)
    figures.save_figure(fig, path)
