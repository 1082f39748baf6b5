"""Chapter 13's math (README, "13. Text to image"): guidance with a prompt and with a negative
prompt, image to image (SDEdit), and the scores of whether a sample obeys its prompt.

Networks here are eps-networks that read a prompt: `network(x_t, t, tokens=tokens)` with token ids
(n, prompts.MAX_TOKENS), the empty prompt (prompts.tokens_for(NOT_ASKED, ...)) playing the part
that "no label" played in chapter 9. The samplers take chapter 6's form: a function of flat points
(n, d) returning (eps, None), such as a UNet behind `eps_network`.
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


def start_step(t_of, strength, T):
    """The respaced step SDEdit starts from: the last k whose original step t_of[k] is at most
    strength * T (0 when no step is: nothing to do, the source is returned)."""
    return int((t_of <= strength * T + 1e-9).nonzero().max())


@torch.no_grad()
def sdedit(network, x0, strength, schedule, steps, generator=None, spacing="t"):
    """Image to image (SDEdit, Meng et al. 2022): noise the source x0 (n, d) along the forward
    chain to step t_0 = strength * T, x_t0 = sqrt(alpha_bar_t0) x0 + sqrt(1 - alpha_bar_t0) z, and
    run DDIM (eta = 0) from there to 0 on the `steps`-step sub-sequence, i.e. the last
    steps x strength of its steps. Strength 1 is the ordinary sampler from (almost) pure noise,
    strength -> 0 returns the source. `network` takes flat points: (x_t (n, d), t) -> (eps, None)."""
    respaced, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, steps, spacing))
    k0 = start_step(t_of, strength, schedule.T)
    if k0 == 0:
        return x0.clone()
    z = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_start = common.x_t_from_eps(x0, z, k0, respaced)     # respaced alpha_bar'_k0 = alpha_bar_{t_of[k0]}
    reverse = ddim.ddim_reverse(ddim.on_respaced_steps(network, t_of), respaced, 0.0)
    return common.sample_chain(reverse, len(x0), k0, generator, x0.device, d=x0.shape[1], x_T=x_start)[0]


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
    the prompts (chapter 9's within_class_spread with the prompt as the class)."""
    return guidance.within_class_spread(torch.as_tensor(np.asarray(levels)).double(),
                                        torch.as_tensor(prompts.table_row(*(np.asarray(a) for a in asked))))
