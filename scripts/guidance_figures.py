"""The figures of chapters 9 and 10 (README "Classifier-free guidance", "Filling in"): drawing
only; every number they show is computed by the chapter scripts and guidance.py."""
import matplotlib.pyplot as plt
import numpy as np
import torch

import common
import digits
import figures
import guidance

TWO_EPS_LOG_SNR = -1.0       # the two-eps figure's step: noisy enough that the label still decides the digit
TWO_EPS_DIGITS = (0, 3, 7)   # the digits asked for from one x_t in that figure
TWO_EPS_W = (1.0, 4.0)
SHOWN = 6                    # held-out digits in the inpainting figure


@torch.no_grad()
def draw_two_eps(model, schedule, split, device, path):
    """The picture of "Classifier-free guidance": one x_t (a held-out digit at log SNR -1), the
    network's x0_hat from eps(x_t, null) and from eps(x_t, c) for a few digits c, the difference
    eps(x_t, c) - eps(x_t, null) that guidance adds w times, and x0_hat of eps~ at two w."""
    t = int(torch.argmin((common.log_snr(schedule)[1:] - TWO_EPS_LOG_SNR).abs())) + 1
    x0 = digits.to_unit(torch.as_tensor(split[2][:1])).reshape(1, 1, 8, 8).float().to(device)   # the first held-out digit
    x_t = common.x_t_from_eps(x0.flatten(1), torch.randn(x0.flatten(1).shape, generator=torch.Generator().manual_seed(0)).to(device),
                              t, schedule).reshape(x0.shape)
    rows = len(TWO_EPS_DIGITS)
    steps, x_t = torch.full((rows,), t, device=device), x_t.expand(rows, -1, -1, -1)
    eps_uncond = model(x_t, steps, None)
    eps_cond = model(x_t, steps, torch.as_tensor(TWO_EPS_DIGITS, device=device))

    def x0_hat(eps):   # eq. 15 on the flattened image, shown in levels
        return digits.to_levels(common.x0_from_eps(x_t.flatten(1), eps.flatten(1), t, schedule))

    panels = [("x_t", digits.to_levels(x_t), "gray_r"), ("x0_hat, no label", x0_hat(eps_uncond), "gray_r"),
              ("x0_hat, label c (w = 0)", x0_hat(eps_cond), "gray_r"),
              ("eps(x, c) - eps(x, null)", (eps_cond - eps_uncond).cpu().numpy().reshape(rows, 8, 8), "RdBu")]
    panels += [(f"x0_hat, w = {w:g}", x0_hat(guidance.guided_eps(eps_cond, eps_uncond, w)), "gray_r") for w in TWO_EPS_W]
    fig, axes = plt.subplots(rows, len(panels), figsize=(1.5 * len(panels), 1.6 * rows + 0.4), squeeze=False)
    largest = float(np.abs(panels[3][1]).max())
    for column, (title, images, cmap) in enumerate(panels):
        for row in range(rows):
            ax = axes[row, column]
            low, high = (-largest, largest) if cmap == "RdBu" else (0, digits.LEVELS - 1)
            ax.imshow(images[row], cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            if row == 0:
                ax.set_title(title, fontsize=8)
            if column == 0:
                ax.set_ylabel(f"c = {TWO_EPS_DIGITS[row]}")
    fig.suptitle(f"one x_t (t = {t} of {schedule.T}, log SNR {float(common.log_snr(schedule)[t]):.1f}), three labels asked", fontsize=9)
    fig.tight_layout()
    figures.save_figure(fig, path)


def draw_guidance(images, curve, guided_levels, asked_digits, samples_per_class):
    """The figures of "Classifier-free guidance": a column of digits per w; accuracy, confidence and diversity against w."""
    columns = min(4, samples_per_class)
    fig, axes = plt.subplots(1, len(curve), figsize=(1.6 * len(curve) * columns / 4 + 0.5, 0.45 * len(asked_digits) + 1))
    axes = np.atleast_1d(axes)
    for ax, (w, *_), levels in zip(axes, curve, guided_levels):
        rows = levels.reshape(len(asked_digits), samples_per_class, 8, 8)[:, :columns]
        figures.show_digits(ax, rows.reshape(-1, 8, 8), columns, f"w = {w:g}")
    fig.tight_layout()
    figures.save_figure(fig, images / "09_guidance.png")

    w_values, accuracy, diversity, confident = (np.array([row[k] for row in curve]) for k in range(4))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(w_values, accuracy, "o-", label="accuracy: the digit asked for")
    ax.plot(w_values, confident, "s-", label="confident share")
    ax.plot(w_values, diversity, "^-", label="diversity (held-out digits: 1)")
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set(xlabel="guidance weight w (s = 1 + w; w = -1: no label)", xticks=w_values,
           title="classifier-free guidance: what w buys and costs")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    figures.save_figure(fig, images / "09_precision_diversity.png")
    print(f"figures written to {images}/09_two_eps.png, 09_guidance.png and 09_precision_diversity.png")


def draw_along_the_chain(images, along, chain_t_of, split, args):
    """The figure of "Why replacement alone fails here": x0_hat(x_t) of the first held-out digit's
    first completion at the watched steps, one row per method, the visible pixels outlined."""
    truth = split[2][0]
    mask = guidance.make_mask(args.masks[0], args.held_out, torch.Generator().manual_seed(args.seed)).numpy()[0].reshape(8, 8)
    watched = next(iter(along.values()))[0]
    fig, axes = plt.subplots(len(along), len(watched) + 1, figsize=(1.5 * (len(watched) + 1), 1.6 * len(along)),
                             squeeze=False)
    for row, (method, (_, _, _, drawn)) in enumerate(along.items()):
        for column, image in enumerate(drawn + [truth]):
            ax = axes[row, column]
            title = "truth" if column == len(drawn) else f"x0_hat at t = {int(chain_t_of[watched[column]])}"
            figures.show_digits(ax, image[None], 1, title if row == 0 else "")
            figures.outline_mask(ax, mask[None], 1)
            ax.title.set_fontsize(8)
        axes[row, 0].set_ylabel(method, fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, images / "10_along_the_chain.png")


def draw_inpainting(images, shown, best, split, args, device):
    """The figure of "Filling in": the visible pixels, two completions per method, the nearest fill, the truth."""
    train_x, _, held_x, _ = split
    n, first = args.held_out, args.masks[0]
    truth = held_x[:n]
    mask = guidance.make_mask(first, n, torch.Generator().manual_seed(args.seed)).numpy().reshape(n, 8, 8)
    x0 = digits.to_unit(truth).to(device)
    shown_k = min(2, args.completions)
    examples = min(SHOWN, n)
    masked = np.where(mask[:examples] == 1, truth[:examples], np.nan)
    panels = [masked] + [shown[first, method][j, :examples] for method in guidance.INPAINTERS for j in range(shown_k)]
    panels += [digits.to_levels(guidance.nearest_fill(x0, torch.as_tensor(mask).reshape(n, 1, 8, 8).to(x0),
                                                      digits.to_unit(train_x).to(device)))[:examples],
               truth[:examples]]
    titles = (["visible"] + [f"{method} {j + 1}" for method in guidance.INPAINTERS for j in range(shown_k)]
              + ["nearest", "truth"])
    fig, axes = plt.subplots(1, len(panels), figsize=(1.3 * len(panels), 1.3 * examples))
    for ax, panel, title in zip(axes, panels, titles):
        figures.show_digits(ax, panel, 1, title)
        figures.outline_mask(ax, mask[:examples], 1)
        ax.title.set_fontsize(8)
    fig.tight_layout()
    figures.save_figure(fig, images / "10_inpainting.png")
    print(f"figures written to {images}/10_inpainting.png and 10_along_the_chain.png")
