"""Chapter 8's figures (README "8. Pictures"): the UNet drawn from the shapes it records, the
forward process on digits, samples beside held-out digits, the reverse process as an animation,
the bound against the baselines, and samples beside their nearest training digits."""
import numpy as np
import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

import checkpoints
import common
import digits
import pictures
from figures import plt, save_figure, show_digits

PIXEL_SCALE = {"low": -1.0, "high": 1.0}  # figures show pixels on their [-1, 1] scale
GIF_FRAMES = 40                            # frames of the reverse-process animation


def centres(levels):
    """Levels shown on the pixel scale: each level at its bin's centre."""
    return digits.to_unit(levels).reshape(-1, digits.SIDE, digits.SIDE).numpy()


def unet_diagram(stages, path):
    """The UNet as boxes, one per recorded stage (unet.UNet's `record`), at the height of its
    resolution (8 x 8 at the top, 2 x 2 at the bottom) and as wide as its side; arrows for the
    path down and up, arcs for the skip connections, and where t (and chapter 9's label) enter."""
    fig, ax = plt.subplots(figsize=(11, 4.8))
    height = {8: 2.0, 4: 1.0, 2: 0.0}
    boxes = []
    for k, (stage, shape) in enumerate(stages):
        side = shape[-1]
        x, y, w = 1.45 * k, height[side], 0.6 + 0.06 * side
        block = "block" in stage
        ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.3), w, 0.6, boxstyle="round,pad=0.02",
                                    color="tab:blue" if block else "lightgray", alpha=0.35 if block else 0.8))
        ax.text(x, y + 0.08, stage.replace(" (with skip)", "\n(+ skip)"), ha="center", va="center", fontsize=8)
        ax.text(x, y - 0.2, f"{shape[1]} x {shape[2]} x {shape[3]}", ha="center", va="center", fontsize=7)
        boxes.append((x, y, w))
    for (x0, y0, w0), (x1, y1, w1) in zip(boxes, boxes[1:]):
        ax.add_patch(FancyArrowPatch((x0 + w0 / 2, y0), (x1 - w1 / 2, y1), arrowstyle="-|>", mutation_scale=12))
    names = [stage for stage, _ in stages]
    for side in ("8x8", "4x4"):
        (xa, ya, _), (xb, yb, _) = boxes[names.index(f"{side} block")], boxes[names.index(f"{side} block (with skip)")]
        ax.add_patch(FancyArrowPatch((xa, ya + 0.32), (xb, yb + 0.32), connectionstyle="arc3,rad=-0.18",
                                     arrowstyle="-|>", mutation_scale=12, color="tab:orange", lw=1.5))
    ax.text(np.mean([b[0] for b in boxes]), 3.05, "skip connections: the features of the way down, "
            "concatenated on the way up", ha="center", color="tab:orange", fontsize=9)
    ax.text(boxes[1][0] - 0.2, 0.55, "down: stride-2\nconvolutions\n8 -> 4 -> 2", fontsize=8, ha="right")
    ax.text(boxes[-2][0] + 0.2, 0.55, "up: nearest\nupsampling\n2 -> 4 -> 8", fontsize=8, ha="left")
    code_y, in_blocks = -0.8, [x for (x, _, _), stage in zip(boxes, names) if "block" in stage]
    ax.text(boxes[0][0], code_y, "t -> sinusoidal code -> MLP\n(chapter 9: + the label's row)", fontsize=8,
            ha="center", va="center", bbox={"facecolor": "lightyellow", "edgecolor": "goldenrod"})
    ax.plot([boxes[0][0] + 0.9, in_blocks[-1]], [code_y, code_y], color="goldenrod", lw=1)
    for (x, y, _), stage in zip(boxes, names):
        if "block" in stage:   # the code is added inside every residual block
            ax.add_patch(FancyArrowPatch((x, code_y), (x, y - 0.32), arrowstyle="-|>", mutation_scale=8,
                                         ls=":", color="goldenrod"))
    ax.set(xlim=(-0.8, boxes[-1][0] + 0.8), ylim=(-1.2, 3.3), xticks=[], yticks=[],
           title="the UNet of chapter 8: eps_theta(x_t, t), its resolutions and skips (drawn from its recorded shapes)")
    for spine in ax.spines.values():
        spine.set_visible(False)
    save_figure(fig, path)


def forward(schedule, heldout_x, seed, path):
    """q(x_t | x0) on six held-out digits at a few t."""
    shown_t = [round(schedule.T * f) for f in (0, 0.05, 0.125, 0.25, 0.5, 0.75, 1)]
    generator = torch.Generator().manual_seed(seed)
    x0 = pictures.flat(digits.to_unit(heldout_x[:6]))
    eps = torch.randn(x0.shape, generator=generator)
    fig, axes = plt.subplots(1, len(shown_t), figsize=(1.6 * len(shown_t), 6))
    for ax, t in zip(axes, shown_t):
        x_t = x0 if t == 0 else common.x_t_from_eps(x0, eps, t, schedule)
        show_digits(ax, x_t.numpy(), 1, f"t = {t}", **PIXEL_SCALE)
    fig.suptitle("the forward process q(x_t | x0) on six held-out digits")
    fig.tight_layout()
    save_figure(fig, path)


def samples(sampled, heldout_x, T, path):
    """100 samples beside 100 held-out digits."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    show_digits(axes[0], centres(sampled[:100]), 10, f"samples (Algorithm 2, T = {T})", **PIXEL_SCALE)
    show_digits(axes[1], centres(heldout_x[:100]), 10, "held-out digits", **PIXEL_SCALE)
    fig.tight_layout()
    save_figure(fig, path)


def reverse_gif(trajectory, path):
    """Sixteen chains of the reverse process, frames denser near t = 0 where the digit sharpens."""
    T = len(trajectory) - 1
    frame_t = sorted({round(T * (1 - k / (GIF_FRAMES - 1)) ** 2) for k in range(GIF_FRAMES)}, reverse=True)
    fig, ax = plt.subplots(figsize=(4.2, 4.5))

    def draw(k):
        ax.clear()
        show_digits(ax, trajectory[frame_t[k]][:16].cpu().numpy(), 4, f"reverse process, t = {frame_t[k]}",
                    **PIXEL_SCALE)

    animation = FuncAnimation(fig, draw, frames=len(frame_t))
    checkpoints.replace_atomically(path, lambda temporary: animation.save(temporary, writer=PillowWriter(fps=8),
                                                                           dpi=110))
    plt.close(fig)


def bits(bits_of, path):
    """The bound beside the baselines, bits per pixel (a dict of per-image values)."""
    names = [name for name in bits_of if name not in ("held-out", "train")] + ["held-out", "train"]
    labels = [f"baseline: {name}" for name in names[:-2]] + ["UNet, held-out", "UNet, training digits"]
    values = [float(np.mean(bits_of[name])) for name in names]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.barh(labels, values, color=["gray"] * (len(names) - 2) + ["tab:blue", "tab:cyan"])
    for k, value in enumerate(values):
        ax.text(value + 0.03, k, f"{value:.2f}", va="center")
    ax.set(xlabel="bits per pixel (lower is better); the baselines on the held-out digits",
           xlim=(0, max(4.7, 1.1 * max(values))), title="the bound against the baselines")  # a short run's bound may pass 4.7
    ax.invert_yaxis()
    fig.tight_layout()
    save_figure(fig, path)


def nearest(sampled, train_x, path):
    """Twelve samples above their nearest training digits, with the distance in levels."""
    index, distance, _ = digits.nearest_training(sampled[:12], train_x)
    fig, axes = plt.subplots(2, 12, figsize=(12, 2.6))
    for k in range(12):
        show_digits(axes[0, k], centres(sampled[k:k + 1]), 1, f"{distance[k]:.1f}", **PIXEL_SCALE)
        show_digits(axes[1, k], centres(train_x[index[k]:index[k] + 1]), 1, **PIXEL_SCALE)
    axes[0, 0].set_ylabel("sample")
    axes[1, 0].set_ylabel("nearest\ntraining")
    fig.suptitle("samples (top, with the distance in levels) and their nearest training digit (bottom)")
    fig.tight_layout()
    save_figure(fig, path)
