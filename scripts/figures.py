"""Drawing helpers the chapters share: figures saved atomically, point clouds on the
walkthrough's fixed axes, grids of digits, and animations of point clouds.
"""
import math

import matplotlib

matplotlib.use("Agg")  # figures are written to files, never shown: no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

from checkpoints import replace_atomically  # noqa: E402

AXIS_LIMIT = 2.5             # the paper's Figure 1 shows about -2..2; the roll reaches +-2.1


def save_figure(fig, path):
    """Save a matplotlib figure atomically and close it."""
    replace_atomically(path, lambda temporary: fig.savefig(temporary, dpi=110))
    plt.close(fig)


def plot_points(ax, x, title):
    """Scatter (n, 2) points on the walkthrough's fixed square axes."""
    x = x.detach().cpu().numpy()
    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5, color="tab:blue", rasterized=True)
    ax.set_xlim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_ylim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_aspect("equal")
    ax.set_title(title)


def show_digits(ax, images, columns, title="", low=0.0, high=16.0, side=8):
    """Square images (n, side, side), 8 x 8 unless said, grey from low (white) to high (black), as
    one grid with a white line between them; an entry np.nan is drawn blank."""
    images = np.asarray(images, dtype=np.float64).reshape(-1, side, side)
    rows, cell = math.ceil(len(images) / columns), side + 1
    grid = np.full((rows * cell + 1, columns * cell + 1), np.nan)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        grid[1 + r * cell:(r + 1) * cell, 1 + c * cell:(c + 1) * cell] = image
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
    ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
    ax.set(xticks=[], yticks=[], title=title)


def outline_mask(ax, masks, columns, side=8, color="tab:red"):
    """Over a show_digits grid of the same layout: a line around the known pixels of each image,
    masks (n, side, side) with 1 where a pixel is known, drawn on the edges between known and hidden."""
    cell = side + 1
    for k, mask in enumerate(np.asarray(masks).reshape(-1, side, side)):
        r, c = divmod(k, columns)
        top, left = 1 + r * cell, 1 + c * cell
        padded = np.pad(mask, 1)
        for i in range(side + 1):            # horizontal edges: between rows i - 1 and i
            for j in range(side):
                if padded[i, j + 1] != padded[i + 1, j + 1]:
                    ax.plot([left + j - 0.5, left + j + 0.5], [top + i - 0.5] * 2, color=color, lw=1.2)
        for i in range(side):                # vertical edges: between columns j - 1 and j
            for j in range(side + 1):
                if padded[i + 1, j] != padded[i + 1, j + 1]:
                    ax.plot([left + j - 0.5] * 2, [top + i - 0.5, top + i + 0.5], color=color, lw=1.2)


def save_points_gif(path, frames, titles, fps=8):
    """An animation of point clouds, one frame per (n, 2) tensor, written atomically.
    Each frame only moves the points of one scatter on bare square axes: drawing ticks again
    for every frame would take most of the time, and the fixed frame shows the scale."""
    fig, ax = plt.subplots(figsize=(4, 4))
    plot_points(ax, frames[0], titles[0])
    ax.set(xticks=[], yticks=[])
    points = ax.collections[0]

    def draw(k):
        points.set_offsets(frames[k].detach().cpu().numpy())
        ax.set_title(titles[k])

    animation = FuncAnimation(fig, draw, frames=len(frames))
    replace_atomically(path, lambda temporary: animation.save(temporary, writer=PillowWriter(fps=fps), dpi=60))
    plt.close(fig)
