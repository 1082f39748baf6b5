"""Chapter 11: continuous time. README section "11. Continuous time: scores, the probability-flow
ODE and flow matching".

Two networks with the same body and the same training budget, both asked at any real time:
- the diffusion's eps-network, trained on ||eps - eps_theta(x_lam, lam)||^2 with the time t
  uniform over [1, T] and lam its log SNR on our schedule (continuous.log_snr_of_time);
- flow matching's velocity network, trained on ||v_theta(x_s, s) - (eps - x0)||^2 along the
  straight path x_s = (1 - s) x0 + s eps, s uniform in [0, 1].
Then, in the README's order, one line per result: the learned score beside the exact one
(brute-force Bayes) at three steps t; the exact log-likelihood of both flows (and of the roll's
own exact flow) on held-out points, beside chapter 3's K and importance-weighted bound and the
ceiling; flow matching's samples with Euler's and Heun's steps at 1 to 40 network calls, beside
chapter 6's four samplers (chapter 5's network) at about the same calls; the two ODEs' paths.

It needs chapter 3's model (outputs/model.pt, scripts/03_train.py) and chapter 5's eps-network
(outputs/ddpm.pt, scripts/05_ddpm.py). Writes outputs/continuous_time/<sampler>_<calls>.npy and,
into images/: 11_score_fields.png, 11_ode_paths.png, 11_quality.png, 11_likelihoods.png.
"""
import argparse
import copy
import math
import pathlib
import time

import torch
from tqdm import tqdm

import checkpoints
import cli
import common
import continuous
import continuous_figures
import ddim
import likelihood
import roll
import runs
from model import ContinuousTimeModel

ITERS = 6000              # the training budget of each network: chapter 5's
BATCH_SIZE = 1024
LR = 3e-3                 # Adam's peak step size: a 2% warm-up, then a cosine decay (chapter 5)
EMA_DECAY = 0.999         # the weights used are a moving average, as in chapter 5
DIFFUSION_TIME_SCALE = 50.0    # lam spans about 20: times 50 it spans about 1,000, as DDPM's t
FLOW_TIME_SCALE = 1000.0       # s spans 1
SCORE_STEPS = (5, 15, 30)      # the steps t at which the score is compared with the exact one
SCORE_POINTS = 2000            # points of q(x_t) per step for the score's error
HELDOUT = 1000                 # held-out points for every likelihood and bound (chapter 7's)
EXACT_POINTS = 200             # of them, the first ones for the roll's exact flow (slow: brute-force Bayes)
IW_TRAJECTORIES = 256          # M of the importance-weighted bound (chapter 7's largest)
CALLS = (1, 2, 5, 10, 20, 40)  # network calls per sample
N_SAMPLES = 5000               # samples per run: real roll samples have W1(u) ~0.002-0.008 here
GRID_POWERS = {"": 2.0, "_uniform": 1.0}   # flow samplers: s_k = (k/N)^2, and the uniform grid
CHAPTER6 = ("ddim_eta0", "ddim_eta1", "analytic", "ddim_heun")
MOMENT_POINTS = 20_000         # roll points per step for Analytic-DPM's statistic (chapter 6's)
PATHS = 300                    # ODE paths drawn per panel of 11_ode_paths.png


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "each network's loss")
    parser.add_argument("--calls", type=cli.distinct_whole_numbers(1), default=list(CALLS),
                        help=f"comma-separated network calls per sample (default: {','.join(map(str, CALLS))})")
    parser.add_argument("--n-samples", type=cli.positive_int, default=N_SAMPLES,
                        help="samples per sampler and number of calls (default: %(default)s)")
    parser.add_argument("--heldout", type=cli.whole_number(2, roll.N_HELDOUT), default=HELDOUT,
                        help="held-out points for the likelihoods and bounds (default: %(default)s)")
    parser.add_argument("--exact-points", type=cli.whole_number(0), default=EXACT_POINTS,
                        help="the first held-out points for the roll's exact flow, 0: none (default: %(default)s)")
    parser.add_argument("--iw-trajectories", type=cli.positive_int, default=IW_TRAJECTORIES,
                        help="M, trajectories per point of the importance-weighted bound (default: %(default)s)")
    parser.add_argument("--score-points", type=cli.whole_number(2), default=SCORE_POINTS,
                        help="points of q(x_t) per step for the score's error (default: %(default)s)")
    parser.add_argument("--moment-points", type=cli.positive_int, default=MOMENT_POINTS,
                        help="roll points per step for Analytic-DPM's E||eps_theta||^2 (default: %(default)s)")
    parser.add_argument("--flow-s-power", type=cli.positive_float, default=1.0,
                        help="train flow matching at s = u^power, u uniform (default: %(default)s, s uniform)")
    parser.add_argument("--chapter3", type=pathlib.Path, default=checkpoints.DEFAULT_CHECKPOINT,
                        help="chapter 3's model, for K and the importance-weighted bound (default: outputs/model.pt)")
    parser.add_argument("--chapter5", type=pathlib.Path, default=checkpoints.DDPM_CHECKPOINT,
                        help="chapter 5's eps-network, for chapter 6's samplers (default: outputs/ddpm.pt)")
    parser.add_argument("--out-dir", type=pathlib.Path, default=cli.OUTPUTS / "continuous_time",
                        help="folder for the samples (default: outputs/continuous_time)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    if args.exact_points > args.heldout:
        parser.error(f"--exact-points ({args.exact_points}) must be at most --heldout ({args.heldout})")
    cli.writable_dir_or_exit(parser, args.out_dir, "the samples")
    # Two networks, one body, one budget. Built first, so their weights depend on --seed alone
    # (loading a checkpoint builds a model too, and draws its initial weights before replacing them).
    diffusion = ContinuousTimeModel(time_scale=DIFFUSION_TIME_SCALE).to(device)
    flow = ContinuousTimeModel(time_scale=FLOW_TIME_SCALE).to(device)
    chapter3, chapter5, schedule = earlier_chapters(parser, args, device)
    lam_min, lam_max = continuous.log_snr_range(schedule)
    runs.prepare_training()
    print(f"schedule: T = {schedule.T}, log SNR from {lam_max:.2f} (t = 1) to {lam_min:.2f} (t = T)")

    diffusion, flow = train_both(parser, diffusion, flow, schedule, args, generator, device)
    the_score(diffusion, schedule, args, generator, device)
    ode_diffusion, ode_flow = probability_flows(diffusion, flow)
    exact_likelihoods(ode_diffusion, ode_flow, chapter3, schedule, args, generator, device)
    x1 = torch.randn(args.n_samples, common.D, generator=torch.Generator().manual_seed(args.seed)).to(device)
    samplers_at_equal_calls(flow, chapter5, schedule, x1, args, generator, device)
    straight_paths(ode_diffusion, ode_flow, x1, lam_min, lam_max, args.images)


def earlier_chapters(parser, args, device):
    """Chapter 3's model (for K and the IW bound) and chapter 5's eps-network (for chapter 6's samplers)."""
    try:
        chapter3, schedule, saved = checkpoints.load_checkpoint(args.chapter3, device)
        if saved["model_config"].get("covariance") == "none":
            raise checkpoints.CheckpointError(f"{args.chapter3} holds an eps-network, not a model trained on K: "
                                              f"give --chapter3 the checkpoint of {checkpoints.TRAIN_COMMAND}")
        chapter5, _, _ = checkpoints.load_eps_network(args.chapter5, device)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    return chapter3, chapter5, schedule


def train_both(parser, diffusion, flow, schedule, args, generator, device):
    """"Time as a number" and "Flow matching": the eps-network at any lam, the velocity network at any s."""
    diffusion, losses_d, seconds_d = train(parser, diffusion, diffusion_loss(schedule, args.batch_size, device),
                                           args, generator, "diffusion")
    flow, losses_f, seconds_f = train(parser, flow, flow_loss(args.batch_size, device, args.flow_s_power),
                                      args, generator, "flow")
    for what, losses, seconds in (("diffusion", losses_d, seconds_d), ("flow", losses_f, seconds_f)):
        tail = losses[-50:]
        print(f"trained model={what}  {args.iters} batches of {args.batch_size} in {seconds:.1f} s; "
              f"loss of the last {len(tail)} batches {sum(tail) / len(tail):.4f}")
    return diffusion, flow


def train(parser, model, loss_of_batch, args, generator, what):
    """Adam on loss_of_batch(model, generator) for args.iters batches, with chapter 5's warm-up,
    cosine decay and moving average of the weights; a non-finite loss stops the run in one line.
    Returns (the average, losses, seconds)."""
    average, optimizer, learning_rate = runs.adam_with_average(model, args.lr, args.iters, EMA_DECAY)
    losses, began = [], time.perf_counter()
    bar = tqdm(range(args.iters), desc=f"training the {what} network")
    for i in bar:
        loss = loss_of_batch(model, generator)
        runs.exit_if_not_finite(parser, loss, i + 1, args.lr, LR, bar)
        runs.take_step(optimizer, loss)
        learning_rate.step()
        average.update_parameters(model)
        losses.append(loss.item())
    return average.module.eval(), losses, time.perf_counter() - began


def diffusion_loss(schedule, batch_size, device):
    """||eps - eps_theta(x_lam, lam)||^2 with t ~ U[1, T] and lam = log_snr_of_time(t)."""
    def loss(model, generator):
        t = 1.0 + (schedule.T - 1) * torch.rand(batch_size, generator=generator, dtype=torch.float64)
        lam = continuous.log_snr_of_time(t, schedule)
        a, sigma = continuous.signal_and_noise(lam.unsqueeze(1))
        x0 = roll.swiss_roll(batch_size, generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        x = a.to(x0) * x0 + sigma.to(x0) * eps
        return (eps - model(x, lam)).square().sum(1).mean()   # lam stays float64 on the CPU

    return loss


def flow_loss(batch_size, device, power=1.0):
    """||v_theta(x_s, s) - (eps - x0)||^2 along the straight path, s = u^power with u ~ U[0, 1]
    (power 1: s uniform, the usual choice; a larger power trains more often near the data)."""
    def loss(model, generator):
        s = torch.rand(batch_size, 1, generator=generator).to(device) ** power
        x0 = roll.swiss_roll(batch_size, generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        return (model(continuous.flow_path(x0, eps, s), s.squeeze(1)) - continuous.flow_target(x0, eps)
                ).square().sum(1).mean()

    return loss


def on_cpu_in_float64(network):
    """A copy of the network for the ODE solver (float64 on the CPU; mps has no float64)."""
    return copy.deepcopy(network).cpu().double().eval()


def the_score(diffusion, schedule, args, generator, device):
    """"The score": -eps_theta / sigma beside the exact score (brute-force Bayes) at three steps t."""
    began = time.perf_counter()
    eps_at = at_one_time(diffusion)
    exact_eps = roll.bayes_optimal_eps(schedule)
    fields = {}
    for t in SCORE_STEPS:
        lam = float(common.log_snr(schedule)[t])
        sigma = math.sqrt(1.0 - float(schedule.alpha_bar[t]))
        _, _, x_t = roll.noised_roll(args.score_points, t, schedule, generator, device)
        with torch.no_grad():
            learned = continuous.score_from_eps(eps_at(x_t, lam).cpu().double(), sigma)
        exact = continuous.score_from_eps(exact_eps(x_t.cpu().double(), t)[0], sigma)
        error = (learned - exact).square().sum(1).mean().item()
        print(f"score  t={t}  log SNR = {lam:.2f}  E||score_theta - score||^2 = {error:.4g}  "
              f"(E||score||^2 = {exact.square().sum(1).mean().item():.4g}; in eps units, sigma^2 times: "
              f"{sigma ** 2 * error:.4g})")
        fields[t] = (*continuous_figures.score_arrows(eps_at, exact_eps, x_t, t, lam, sigma), sigma)
    continuous_figures.draw_score_fields(args.images / "11_score_fields.png", fields, schedule)
    print(f"scores compared in {time.perf_counter() - began:.1f} s")


def at_one_time(network):
    """The network asked at one time (lam or s) shared by all points: network(x, time)."""
    return lambda x, time_: network(x, torch.full((x.shape[0],), float(time_), dtype=x.dtype, device=x.device))


def probability_flows(diffusion, flow):
    """"The probability-flow ODE, in our notation": the diffusion's velocity v(x, lam) and flow
    matching's v(x, s), on float64 copies on the CPU for the ODE solver."""
    return (continuous.probability_flow_velocity(at_one_time(on_cpu_in_float64(diffusion))),
            at_one_time(on_cpu_in_float64(flow)))


def exact_likelihoods(ode_diffusion, ode_flow, chapter3, schedule, args, generator, device):
    """"Its exact likelihood": both flows' log p of held-out points, beside chapter 3's K and IW bound."""
    began = time.perf_counter()
    lam_min, lam_max = continuous.log_snr_range(schedule)
    x0 = roll.heldout_roll(args.heldout)
    # The diffusion's ODE stops at t = 1 (lam_max); the flow's at the s with the same log SNR.
    # Both densities are of x / a there, the data blurred by noise of variance exp(-lam_max).
    # They are asked at the held-out points themselves ("curve": no width, as K and IW are) and
    # at the same points blurred by that noise ("blurred": a law with a density, where no model
    # beats its own entropy).
    s_min = float(continuous.flow_time_of_log_snr(lam_max))
    a_max = float(continuous.signal_and_noise(lam_max)[0])
    blur = math.exp(-lam_max)
    point_sets = {"curve": x0, "blurred": x0 + math.sqrt(blur) * torch.randn(x0.shape, generator=generator)}
    flows = {  # velocity, from, to, a at the data's end, and whether it gives its divergence itself
        "diffusion": (ode_diffusion, lam_max, lam_min, a_max, False),
        "flow": (ode_flow, s_min, 1.0, 1.0 - s_min, False),
        "exact_roll_flow": (continuous.exact_roll_flow(), lam_max, lam_min, a_max, True)}
    results = {}
    probe = continuous.rademacher(x0.shape, generator)
    for what, (velocity, start, end, scale, exact_flow) in flows.items():
        for points, x in point_sets.items():
            x = x[:args.exact_points] if exact_flow else x   # the roll's exact flow (slow) on the first points
            # Hutchinson's trace beside the exact one, on the held-out points of the learned flows
            for trace in ["exact"] + (["hutchinson"] if points == "curve" and not exact_flow else []):
                if not len(x):
                    continue
                began_one = time.perf_counter()
                log_p, nfev = continuous.ode_log_likelihood(velocity, x, start, end, scale,
                                                            probe=probe if trace == "hutchinson" else None,
                                                            with_divergence=exact_flow)
                results[what, points, trace] = log_p
                bits, se = roll.mean_and_se_bits(log_p)
                print(f"likelihood=ode  model={what}  points={points}  trace={trace}  bits = {bits:.3f} (se {se:.3f})"
                      f"  [{len(x)} points, {nfev} velocity evaluations, {time.perf_counter() - began_one:.1f} s]",
                      flush=True)
        if (what, "curve", "hutchinson") in results:
            gap = roll.mean_and_se_bits(results[what, "curve", "hutchinson"] - results[what, "curve", "exact"])
            print(f"hutchinson - exact  model={what}  mean {gap[0]:+.4f} bits (se {gap[1]:.4f}): one probe per "
                  f"point, unbiased")
    for points in point_sets:
        if ("exact_roll_flow", points, "exact") in results:
            exact = results["exact_roll_flow", points, "exact"]
            gap = roll.mean_and_se_bits(results["diffusion", points, "exact"][:len(exact)] - exact)
            print(f"diffusion - exact_roll_flow  points={points}  {gap[0]:+.3f} bits (paired se {gap[1]:.3f}, "
                  f"first {len(exact)} points)")
    results["K", "curve", ""] = roll.heldout_K(common.reverse_of(chapter3, schedule), schedule, args.heldout,
                                               args.seed, device)
    log_weights = likelihood.iw_log_weights(chapter3, schedule, x0.to(device), args.iw_trajectories, generator)
    results["IW", "curve", ""] = likelihood.importance_weighted_bound(log_weights)
    for name, label in (("K", "K"), ("IW", f"IW M={args.iw_trajectories}")):
        bits, se = roll.mean_and_se_bits(results[name, "curve", ""])
        print(f"likelihood=bound  model=chapter3  points=curve  {label}  bits = {bits:.3f} (se {se:.3f})")
    # K and IW model x0 through a last step of variance beta_1 (about blur): on the curve their
    # ceiling is the blurred roll's density at its own crest. On the blurred points, -H of the
    # blurred roll (roll.K_ceiling's number) caps every model's expected log-likelihood.
    ceilings = {"curve": common.nats_to_bits(roll.log_likelihood_ceiling(blur)),
                "blurred": common.nats_to_bits(roll.K_ceiling(blur))}
    print(f"ceiling  points=curve  {ceilings['curve']:.3f} bits (for a model whose last step blurs by variance "
          f"{blur:.3g}, as K's)  points=blurred  {ceilings['blurred']:.3f} bits (for any model: minus the blurred "
          f"roll's entropy); likelihoods in {time.perf_counter() - began:.1f} s")
    continuous_figures.draw_likelihoods(args.images / "11_likelihoods.png", results, ceilings, args.iw_trajectories)


def samplers_at_equal_calls(flow, chapter5, schedule, x1, args, generator, device):
    """"Steps, and where they go": flow matching's Euler and Heun beside chapter 6's samplers, from the same x_T."""
    began, scored = time.perf_counter(), {}

    def record(name, calls, x):
        x = x.detach().cpu()
        checkpoints.save_array(args.out_dir / f"{name}_{calls}.npy", x)
        scored[name, calls] = scores = roll.score_samples(x)
        print(f"sampler={name}  calls={calls}  off-curve {100 * scores['off_curve']:.2f}%  "
              f"W1(u) = {scores['w1_u']:.4f}  KS p = {scores['ks_p']:.2g}", flush=True)

    velocity_at = at_one_time(flow)
    for suffix, power in GRID_POWERS.items():
        for calls in args.calls:
            record(f"flow_euler{suffix}", calls,
                   continuous.flow_sample(velocity_at, x1, continuous.flow_time_grid(calls, power)))
            steps, heun_steps = continuous.flow_heun_steps(calls)
            record(f"flow_heun{suffix}", calls, continuous.flow_sample(
                velocity_at, x1, continuous.flow_time_grid(steps, power), heun_steps))
    mean_sq_eps, _ = roll.eps_moments(chapter5, schedule, args.moment_points, generator, device)
    four_samplers = cli.load_chapter("06_fewer_steps.py").four_samplers
    for name in CHAPTER6:   # chapter 6's samplers with chapter 5's network, from the same x_T
        for steps in ddim.steps_for_calls(name, args.calls, schedule.T):
            respaced, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, steps, "log_snr"))
            reverse = four_samplers(chapter5, respaced, t_of, mean_sq_eps)[name]
            chain = common.sample_chain(reverse, args.n_samples, steps, torch.Generator().manual_seed(args.seed),
                                        device)
            record(name, ddim.network_calls(name, steps), chain[0])
    lo, hi = roll.w1_band(args.n_samples)
    print(f"real roll samples of this size: W1(u) {lo:.4f}-{hi:.4f} (5-95%); samplers in "
          f"{time.perf_counter() - began:.1f} s; samples in {args.out_dir}/")
    continuous_figures.draw_quality(args.images / "11_quality.png", scored, (lo, hi))


def straight_paths(ode_diffusion, ode_flow, x1, lam_min, lam_max, images):
    """"Straight paths?": the two ODEs' paths from the same x_T, and how much longer than straight."""
    start = x1[:PATHS].cpu().double()
    paths = {"diffusion": continuous.ode_paths(ode_diffusion, start, lam_min, lam_max),
             "flow": continuous.ode_paths(ode_flow, start, 1.0, 0.0)}
    for what, path in paths.items():
        length = (path[1:] - path[:-1]).norm(dim=2).sum(0)
        ratio = (length / (path[-1] - path[0]).norm(dim=1)).median().item()
        print(f"paths  model={what}  median path length / distance from x_T to x_0 = {ratio:.3f}")
    continuous_figures.draw_paths(images / "11_ode_paths.png", paths)
    print(f"figures written to {images}/: 11_score_fields.png, 11_likelihoods.png, 11_quality.png, "
          f"11_ode_paths.png")


if __name__ == "__main__":
    main()
