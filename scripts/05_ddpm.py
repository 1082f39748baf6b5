"""Chapter 5: what DDPM changed. README section "5. What DDPM changed: the noise, the simple loss
and the reverse variance".

Ho et al. (2020) kept the chain and changed three things: the network predicts the noise eps,
the loss drops the bound's weights (L_simple, their Algorithm 1), and the reverse variance is no
longer learned but fixed. This script trains an eps-network with L_simple on the same roll, the
same schedule and the same network body as chapter 3, then gives that one network five reverse
variances and scores each one with chapter 3's bound K on held-out points and with its samples:

- beta           sigma_t^2 = beta_t (DDPM)
- beta_tilde     sigma_t^2 = beta_tilde_t, the posterior's own variance (DDPM)
- analytic       Analytic-DPM's formula from E||eps_theta||^2, estimated per t on fresh points
- isotropic_best the isotropic variance that maximises K for this network's mean
- learned        a per-point variance, fitted on the bound with the mean frozen (as in the
                 hybrid loss of Improved DDPM), with chapter 3's variance outputs

Writes outputs/ddpm.pt (atomically) and, into images/: 05_weights.png (the weights L_simple
drops), 05_kl_per_step.png (the variances and where each loses its bits) and 05_samples.png.
"""
import argparse
import math
import pathlib
import time

import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

import common
import ddpm
import checkpoints
import cli
import figures
import runs
import roll
from model import ReverseModel

ITERS = 6000              # L_simple iterations: about a minute on a 2-core CPU
BATCH_SIZE = 1024         # (x0, t, eps) triples per iteration: for this loss, more and smaller
                          # batches beat chapter 3's 4,096 at the same cost (README, chapter 5)
LR = 3e-3                 # Adam's peak step size: a 2% warm-up, then a cosine decay
EMA_DECAY = 0.999         # the weights scored are an exponential moving average, as in DDPM
N_MOMENTS = 20_000        # fresh roll points per step for E||eps_theta||^2 and E||x0 - x0_hat||^2
LEARNED_ITERS = 150       # steps fitting the variance outputs alone: a few seconds
LEARNED_LR = 3e-2         # the fit is convex in those outputs, so a large step is safe
N_SAMPLES = 20_000        # samples drawn and scored per variance
VARIANCES = ("beta", "beta_tilde", "analytic", "isotropic_best", "learned")
SHOWN_STEPS = (2, 3, 5, 10, 20, 30, 40)   # steps printed in the table of weights
U_BINS = 20               # bins of the position along the curve in the samples figure


def train_l_simple(model, schedule, args, generator, device):
    """Algorithm 1 with t uniform in 2..T: minimise ||eps - eps_theta(x_t, t)||^2. Returns the
    moving average of the weights (a ReverseModel), the loss of every iteration and the seconds."""
    average, optimizer, learning_rate = runs.adam_with_average(model, args.lr, args.iters, EMA_DECAY)
    losses, began = [], time.perf_counter()
    for i in tqdm(range(args.iters), desc="training with L_simple"):
        t = torch.randint(2, schedule.T + 1, (args.batch_size,), generator=generator).to(device)
        _, eps, x_t = roll.noised_roll(args.batch_size, t, schedule, generator, device)
        loss = (eps - model(x_t, t)[0]).square().sum(1).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at iteration {i + 1}")
        runs.take_step(optimizer, loss)
        learning_rate.step()
        average.update_parameters(model)
        losses.append(loss.item())
    return average.module, losses, time.perf_counter() - began


def fit_variance_outputs(eps_network, schedule, batch_size, generator, device):
    """The "learned" variance: chapter 3's model with diagonal covariance, its body and eps outputs
    copied from the eps-network and frozen, and only the outputs of L trained, on the bound -K.
    Frozen, the mean is DDPM's; only the variance of each point's step is learned."""
    model = ReverseModel(**{**eps_network.config, "covariance": "diagonal"}).to(device)
    state = eps_network.state_dict()
    for name in ("output.weight", "output.bias"):   # rows 0..D-1: eps; the new rows start at L = I
        state[name] = torch.cat([state[name], model.state_dict()[name][common.D:]])
    model.load_state_dict(state)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    head = [model.output.weight, model.output.bias]
    variance_rows = torch.arange(len(model.output.bias), device=device) >= common.D
    for parameter in head:
        parameter.requires_grad_(True)
        parameter.register_hook(lambda grad: grad * variance_rows.reshape(-1, *[1] * (grad.dim() - 1)))
    optimizer = torch.optim.Adam(head, lr=LEARNED_LR)
    reverse = common.reverse_of(model, schedule)
    for _ in range(LEARNED_ITERS):
        x0 = roll.swiss_roll(batch_size, generator).to(device)
        t = torch.randint(2, schedule.T + 1, (batch_size,), generator=generator).to(device)
        loss = common.kl_one_step(reverse, x0, t, schedule, generator).mean()  # -K up to constants
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def variance_table(schedule, per_step):
    """A table indexed by t from the values for t = 2..T; t = 1 holds the fixed kernel's beta_1."""
    return torch.cat([torch.tensor([0.0, float(schedule.beta[1])], dtype=torch.float64),
                      torch.as_tensor(per_step, dtype=torch.float64).flatten()])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "L_simple")
    parser.add_argument("--n-samples", type=cli.positive_int, default=N_SAMPLES,
                        help="samples drawn and scored for each variance (default: %(default)s)")
    parser.add_argument("--n-heldout", type=cli.whole_number(2, roll.N_HELDOUT), default=roll.N_HELDOUT,
                        help="held-out points for K (default: %(default)s)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.DDPM_CHECKPOINT,
                        help="where to save the eps-network (default: outputs/ddpm.pt)")
    parser.add_argument("--reuse", action="store_true",
                        help="score the eps-network already in --checkpoint instead of training one")
    parser.add_argument("--chapter3", type=pathlib.Path, default=checkpoints.DEFAULT_CHECKPOINT,
                        help="chapter 3's model, whose K is shown for comparison when the file "
                             "exists (default: outputs/model.pt)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    if not args.reuse:
        cli.output_file_or_exit(parser, args.checkpoint, "the checkpoint", example="ddpm.pt")
    runs.prepare_training()
    # Built before any other model, so its initial weights depend on --seed alone.
    eps_network = ReverseModel(covariance="none").to(device)
    try:
        chapter3 = None
        if args.chapter3.exists():
            chapter3, _, saved = checkpoints.load_checkpoint(args.chapter3, device)
            if saved["model_config"].get("covariance") == "none":
                raise checkpoints.CheckpointError(f"{args.chapter3} holds an eps-network, not a model trained "
                                               f"on K: give --chapter3 the checkpoint of scripts/03_train.py")
        if args.reuse:
            eps_network, schedule, saved = checkpoints.load_eps_network(args.checkpoint, device)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")

    # 1. Algorithm 1: the same body as chapter 3, eps outputs only, t uniform in 2..T (t = 1 stays
    # the fixed kernel of eq. 44, so K is comparable with chapter 3's).
    if args.reuse:
        print(f"reusing the eps-network in {args.checkpoint} ({saved['iteration']} iterations of L_simple)")
    else:
        schedule = common.make_schedule()
        try:
            eps_network, losses, seconds = train_l_simple(eps_network, schedule, args, generator, device)
        except FloatingPointError as error:
            parser.exit(1, f"error: {error}, so training stopped and no checkpoint was written; try a "
                           f"smaller --lr, such as the default {LR:g}\n")
        checkpoints.save_checkpoint(args.checkpoint, eps_network, schedule, args, args.iters,
                                 generator_state=generator.get_state())
        first, last = sum(losses[:50]) / len(losses[:50]), sum(losses[-50:]) / len(losses[-50:])
        print(f"trained {args.iters} iterations in {seconds:.1f} s ({args.iters / seconds:.1f} it/s) on {device}; "
              f"||eps - eps_theta||^2 from {first:.3f} to {last:.3f} (means of the first and last 50 batches)")
        print(f"checkpoint written to {args.checkpoint}")
    eps_network.eval()
    T = schedule.T
    steps = torch.arange(2, T + 1)

    # 2. The weights L_simple drops: KL_t = w_t E||eps - eps_theta||^2 + C_t for a fixed variance.
    _, _, beta_tilde = common.posterior_coefficients(steps, schedule, torch.zeros((), dtype=torch.float64))
    beta = variance_table(schedule, common.at(schedule.beta, steps))
    beta_tilde = variance_table(schedule, beta_tilde)
    weight = {name: variance_table(schedule, ddpm.eps_weight(steps, schedule, common.at(var, steps)))
              for name, var in (("beta", beta), ("beta_tilde", beta_tilde))}
    print("the bound's weight w_t on ||eps - eps_theta||^2 (L_simple uses 1 for every t):")
    print("   t     beta_t   w_t (sigma^2 = beta_t)   w_t (sigma^2 = beta_tilde_t)")
    for t in SHOWN_STEPS:
        print(f"  {t:2d}   {float(schedule.beta[t]):.2e}   {float(weight['beta'][t]):20.4f}   "
              f"{float(weight['beta_tilde'][t]):26.4f}")

    # 3. The variances. Both statistics are per-t averages over fresh training points.
    began = time.perf_counter()
    mean_sq_eps, mean_sq_x0_error = roll.eps_moments(eps_network, schedule, N_MOMENTS, generator, device)
    half_range = roll.half_range()   # Analytic-DPM's clip
    variance = {
        "beta": beta,
        "beta_tilde": beta_tilde,
        "analytic": variance_table(schedule, ddpm.analytic_variance(
            steps, schedule, mean_sq_eps[steps].unsqueeze(1), half_range)),
        "isotropic_best": variance_table(schedule, ddpm.best_isotropic_variance(
            steps, schedule, mean_sq_x0_error[steps].unsqueeze(1))),
    }
    reverse = {name: ddpm.reverse_with_variance(eps_network, schedule, var) for name, var in variance.items()}
    learned = fit_variance_outputs(eps_network, schedule, args.batch_size, generator, device)
    reverse["learned"] = common.reverse_of(learned, schedule)
    print(f"variances ready in {time.perf_counter() - began:.1f} s (statistics on {N_MOMENTS} fresh points "
          f"per t; {LEARNED_ITERS} steps fitting the learned variance)")

    # 4. Each variance scored: K on the same held-out points and noise (paired), and its samples.
    print(f"K on {args.n_heldout} held-out points, every t from 2 to {T}; {args.n_samples} samples each:")
    kl, K, scores, samples = {}, {}, {}, {}
    for name in VARIANCES:
        kl[name] = roll.heldout_kl(reverse[name], schedule, args.n_heldout, args.seed, device)
        K[name] = roll.mean_and_se_bits(common.bound_K(kl[name], schedule))
        chain = common.sample_chain(reverse[name], args.n_samples, T, torch.Generator().manual_seed(args.seed), device)
        samples[name] = chain[0].cpu()
        scores[name] = roll.score_samples(samples[name])
        print(f"variance={name}  K = {K[name][0]:.3f} bits  (se {K[name][1]:.3f})  "
              f"off-curve {100 * scores[name]['off_curve']:.2f}%  along-curve KS p = {scores[name]['ks_p']:.2g}")
    gap = common.bound_K(kl["isotropic_best"], schedule) - common.bound_K(kl["analytic"], schedule)
    print(f"isotropic_best - analytic = {roll.mean_and_se_bits(gap)[0]:.3f} bits (paired se "
          f"{roll.mean_and_se_bits(gap)[1]:.3f}): what the network's distance from E[eps | x_t] costs")
    if chapter3 is not None:
        kl["chapter 3"] = roll.heldout_kl(common.reverse_of(chapter3, schedule), schedule, args.n_heldout,
                                          args.seed, device)
        K3 = roll.mean_and_se_bits(common.bound_K(kl["chapter 3"], schedule))
        print(f"chapter 3's model ({args.chapter3}, {chapter3.config['covariance']} covariance, trained on K): "
              f"K = {K3[0]:.3f} bits  (se {K3[1]:.3f})")
    else:
        print(f"no chapter-3 model at {args.chapter3}: run python scripts/03_train.py to compare")

    # 5. Figures: the weights; the variances and where each loses its bits; the samples.
    t_axis = steps.numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, var in (("beta", "beta_t"), ("beta_tilde", "beta_tilde_t")):
        axes[0].semilogy(t_axis, weight[name][2:], marker=".", label=f"bound, sigma_t^2 = {var}")
    axes[0].axhline(1.0, color="gray", ls="--", label="L_simple: 1 for every t")
    axes[0].set(xlabel="step t", ylabel="weight on ||eps - eps_theta||^2", title="what the bound weighs, per step")
    axes[0].legend()
    mean_sq_eps_error = mean_sq_x0_error * schedule.alpha_bar / (1.0 - schedule.alpha_bar)
    axes[1].plot(t_axis, mean_sq_eps_error[2:], marker=".", color="tab:green")
    axes[1].set(xlabel="step t", ylabel="E||eps - eps_theta||^2 (fresh points)",
                title="the trained eps-network's error, per step")
    fig.tight_layout()
    figures.save_figure(fig, args.images / "05_weights.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, var in variance.items():
        axes[0].semilogy(t_axis, (var / beta_tilde)[2:], marker=".", label=name)
    axes[0].set(xlabel="step t", ylabel="sigma_t^2 / beta_tilde_t", title="the isotropic variances")
    axes[0].legend()
    # Every variance shares the eps-network's mean, so the KL terms differ little: each is drawn
    # against isotropic_best's, the best a single number per step can do.
    for name, table in kl.items():
        axes[1].plot(t_axis, common.nats_to_bits((table - kl["isotropic_best"])[:, 2:].mean(0)), marker=".", label=name)
    axes[1].set(xlabel="step t", ylabel="KL_t - KL_t(isotropic_best), bits",
                title="where each variance loses its bits")
    axes[1].legend()
    fig.tight_layout()
    figures.save_figure(fig, args.images / "05_kl_per_step.png")

    # Below each variance's samples: where along the curve they fell (u of the nearest curve
    # point, uniform for the data), in U_BINS bins against the band chance gives at this size.
    fig, axes = plt.subplots(2, len(VARIANCES), figsize=(3.2 * len(VARIANCES), 6.4),
                             gridspec_kw={"height_ratios": [3, 2]})
    expected = args.n_samples / U_BINS
    band = 2.0 * math.sqrt(expected * (1.0 - 1.0 / U_BINS)) / expected
    for top, bottom, name in zip(axes[0], axes[1], VARIANCES):
        figures.plot_points(top, samples[name], f"{name}\nK = {K[name][0]:.2f} bits, "
                                                 f"off-curve {100 * scores[name]['off_curve']:.2f}%")
        top.set(xticks=[], yticks=[])
        _, u = roll.nearest_on_curve(samples[name])
        counts = torch.bincount((u * U_BINS).long().clamp_max(U_BINS - 1), minlength=U_BINS)
        bottom.stairs(counts / expected, torch.linspace(0.0, 1.0, U_BINS + 1), color="tab:blue", lw=1.5)
        bottom.axhspan(1.0 - band, 1.0 + band, color="gray", alpha=0.3, label="data: 95% of bins")
        bottom.set(xlabel="position along the curve u", ylim=(0.7, 1.3),
                   title=f"KS p = {scores[name]['ks_p']:.2g}")
    axes[1, 0].set_ylabel("density / uniform")
    axes[1, 0].legend(loc="lower left")
    fig.tight_layout()
    figures.save_figure(fig, args.images / "05_samples.png")
    print(f"figures written to {args.images}/: 05_weights.png, 05_kl_per_step.png, 05_samples.png")


if __name__ == "__main__":
    main()
