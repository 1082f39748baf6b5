"""Chapter 13's math (README, "13. Text to image"): guidance with a prompt and with a negative
prompt, image to image (SDEdit), and the scores of whether a sample obeys its prompt.

Networks here are eps-networks that read a prompt: `network(x_t, t, tokens=tokens)` with token ids
(n, prompts.MAX_TOKENS), the empty prompt (prompts.tokens_for(NOT_ASKED, ...)) playing the part
that "no label" played in chapter 9. The samplers are chapter 12's deterministic chains (ddim.deterministic_chain), on images of
any shape.
"""
import numpy as np
import torch

import common
import ddim
import guidance
import prompts
from prompts import NOT_ASKED


def empty_prompt(n):
    """The token ids (n, MAX_TOKENS) of the empty prompt: <start> and padding."""
    return prompts.tokens_for(torch.full((n,), NOT_ASKED), torch.full((n,), NOT_ASKED), torch.full((n,), NOT_ASKED))


def prompted(network, tokens, w, negative=None):
    """Classifier-free guidance with a prompt, as an eps-function (x_t, t) -> eps~:
    eps~ = (1 + w) eps(x, prompt) - w eps(x, negative), chapter 9's guided_eps, where the negative
    prompt's tokens take the place of "no prompt" (the empty prompt when negative is None).
    Stable Diffusion's scale is s = 1 + w."""
    negative = empty_prompt(len(tokens)).to(tokens.device) if negative is None else negative
    return guidance.guided(lambda x_t, t, p: network(x_t, t, tokens=p), tokens, w, negative=negative)


def sdedit(eps_at, x0, strength, schedule, steps, generator=None, solver="ddim"):
    """Image to image (SDEdit, Meng et al. 2022): noise the source x0 along the forward chain to
    step t0 = strength * T, x_t0 = sqrt(alpha_bar_t0) x0 + sqrt(1 - alpha_bar_t0) z, then run the
    ordinary deterministic chain (ddim.deterministic_chain) from there: the same chain on the
    schedule cut at t0 (its steps 1..t0 are the original ones), with steps x strength of its
    steps. Strength 1 is the ordinary sampler from (almost) pure noise; below 2 / T the source
    comes back untouched. eps_at(x, t) answers for original step t (a number)."""
    t0 = round(strength * schedule.T)
    if t0 < 2:
        return x0.clone()
    z = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t0 = common.x_t_from_eps(x0, z, t0, schedule)
    cut = common.schedule_from_beta(schedule.beta[:t0 + 1])
    return ddim.deterministic_chain(eps_at, x_t0, cut, min(t0, max(2, round(steps * strength))), solver)


# --- does a sample obey its prompt? -----------------------------------------------------------

def obedience(levels, asked, predicted, thickness_cuts, slant_cuts):
    """The share of samples that are what their prompt asked for. `levels` (n, 28, 28) grey levels,
    `asked` = (label, thickness, slant) tercile codes (n,) each (NOT_ASKED where not said),
    `predicted` the classifier's digit for each sample. Returns a dict of rates:
    digit (among all), thickness and slant (among the samples whose prompt said it, the tercile
    measured with the asked digit's cuts), both (among those that said both), and the counts."""
    label, thick, lean = (np.asarray(a) for a in asked)
    measured_thick = prompts.tercile(prompts.thickness(levels), label, thickness_cuts)
    measured_lean = prompts.tercile(prompts.slant(levels), label, slant_cuts)
    said_thick, said_lean = thick != NOT_ASKED, lean != NOT_ASKED
    both = said_thick & said_lean
    return {"digit": float(np.mean(np.asarray(predicted) == label)),
            "thickness": float(np.mean(measured_thick[said_thick] == thick[said_thick])),
            "slant": float(np.mean(measured_lean[said_lean] == lean[said_lean])),
            "both": float(np.mean((measured_thick == thick)[both] & (measured_lean == lean)[both])),
            "n": len(label), "n_thickness": int(said_thick.sum()), "n_slant": int(said_lean.sum()),
            "n_both": int(both.sum())}


def within_prompt_diversity(levels, asked):
    """The mean distance (in grey levels) between two samples of the same prompt, averaged over
    the prompts (chapter 9's within_class_spread with the prompt as the class); NaN when no
    prompt has two samples."""
    prompt = prompts.table_row(*(np.asarray(a) for a in asked))
    if np.bincount(prompt).max() < 2:
        return float("nan")
    return guidance.within_class_spread(torch.as_tensor(np.asarray(levels)).double(), torch.as_tensor(prompt))
