"""Each plausible bug of issues 20 and 27, made on a copy of the repository, must fail its test.

For every mutation below (a bug someone could plausibly write), this copies scripts/, tests/,
docs/, images/ and pytest.ini to a temporary folder, makes the one change there, runs the tests meant
to catch it, and prints whether they failed. The repository itself is never touched. Exit
status 1 if a mutation is not caught or its line is no longer in the code (then update its
anchor here). About two minutes on 2 cores.

    python docs/bug_classes.py            # all of them
    python docs/bug_classes.py M1 M4      # some, by their first word
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAWS = "tests/test_inpainting_laws.py::"

# (name, file, the line as it is, the bug, the tests that must fail)
M = [
 ("M1 respaced chain asks the network at k, not tau_k", "scripts/ddim.py",
  "network(x_t, t_of[torch.as_tensor(k).cpu()].to(x_t.device))", "network(x_t, torch.as_tensor(k).to(x_t.device))",
  ["tests/test_fewer_steps.py::test_respaced_chain_with_the_exact_network_of_gaussian_data_takes_the_exact_reverse_step",
   "tests/test_fewer_steps.py::test_script_prints_one_row_per_run_asks_the_network_only_at_the_kept_steps_and_saves_samples"]),
 ("M1b chapter 6 script passes the bare network to the respaced chain", "scripts/06_fewer_steps.py",
  "net = ddim.on_respaced_steps(network, t_of)", "net = network",
  ["tests/test_fewer_steps.py::test_script_prints_one_row_per_run_asks_the_network_only_at_the_kept_steps_and_saves_samples"]),
 ("M2a respaced analytic variance on the original schedule at k", "scripts/ddim.py",
  "var[2:] = ddpm.analytic_variance(learned, respaced,", "var[2:] = ddpm.analytic_variance(learned, common.make_schedule(),",
  ["tests/test_fewer_steps.py::test_respaced_chain_with_the_exact_network_of_gaussian_data_takes_the_exact_reverse_step"]),
 ("M2b respaced analytic variance on the original schedule at tau_k", "scripts/ddim.py",
  "var[2:] = ddpm.analytic_variance(learned, respaced,", "var[2:] = ddpm.analytic_variance(t_of[learned], common.make_schedule(),",
  ["tests/test_fewer_steps.py::test_respaced_chain_with_the_exact_network_of_gaussian_data_takes_the_exact_reverse_step"]),
 ("M2c respaced analytic variance reads E||eps||^2 at k, not tau_k", "scripts/ddim.py",
  "mean_sq_eps[t_of[learned]]", "mean_sq_eps[learned]",
  ["tests/test_fewer_steps.py::test_respaced_chain_with_the_exact_network_of_gaussian_data_takes_the_exact_reverse_step"]),
 ("M3a DDIM sigma = eta^2 sqrt(...)", "scripts/ddim.py",
  "return eta * torch.sqrt(", "return eta ** 2 * torch.sqrt(",
  ["tests/test_fewer_steps.py::test_ddim_sigma_squared_is_eta_squared_times_the_posterior_variance_of_each_jump",
   "tests/test_fewer_steps.py::test_ddim_direction_coefficient_keeps_q_marginal_of_x_s"]),
 ("M3b DDIM sigma = sqrt(eta) sqrt(...)", "scripts/ddim.py",
  "return eta * torch.sqrt(", "return eta ** 0.5 * torch.sqrt(",
  ["tests/test_fewer_steps.py::test_ddim_sigma_squared_is_eta_squared_times_the_posterior_variance_of_each_jump",
   "tests/test_fewer_steps.py::test_ddim_direction_coefficient_keeps_q_marginal_of_x_s"]),
 ("M4 c_t and k_t from tables cast to float32 first", "scripts/common.py",
  "    c_t = torch.sqrt(alpha_bar_prev) * beta_t / (1.0 - alpha_bar_t)\n    k_t = torch.sqrt(1.0 - beta_t) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)\n",
  "    c_t = torch.sqrt(alpha_bar_prev.to(like)) * beta_t.to(like) / (1.0 - alpha_bar_t.to(like))\n    k_t = torch.sqrt(1.0 - beta_t.to(like)) * (1.0 - alpha_bar_prev.to(like)) / (1.0 - alpha_bar_t.to(like))\n",
  ["tests/test_math.py::test_posterior_weights_c_t_and_k_t_are_computed_in_float64_then_cast"]),
 ("M5a sub_sequence t targets from 0 to T", "scripts/ddim.py",
  "torch.linspace(1.0, float(T), steps", "torch.linspace(0.0, float(T), steps",
  ["tests/test_fewer_steps.py::test_sub_sequence_in_t_is_the_step_nearest_each_evenly_spaced_target"]),
 ("M5b sub_sequence t targets from 1 to T - 1", "scripts/ddim.py",
  "torch.linspace(1.0, float(T), steps", "torch.linspace(1.0, float(T - 1), steps",
  ["tests/test_fewer_steps.py::test_sub_sequence_in_t_is_the_step_nearest_each_evenly_spaced_target"]),
 ("M5c sub_sequence log-SNR step index off by one", "scripts/ddim.py",
  "float(torch.argmin((level - w).abs())) + 1.0", "float(torch.argmin((level - w).abs())) + 2.0",
  ["tests/test_fewer_steps.py::test_sub_sequence_in_log_snr_is_the_step_nearest_each_evenly_spaced_log_snr"]),
 ("M6 beta and beta_tilde swapped in chapter 5's weight table", "scripts/05_ddpm.py",
  'for name, var in (("beta", beta), ("beta_tilde", beta_tilde))}', 'for name, var in (("beta", beta_tilde), ("beta_tilde", beta))}',
  ["tests/test_ddpm.py::test_script_prints_the_five_variance_lines_and_best_isotropic_beats_both_fixed"]),
 ("M6c beta and beta_tilde swapped in chapter 5's table of variances (the K rows)", "scripts/05_ddpm.py",
  '        "beta": beta,\n        "beta_tilde": beta_tilde,\n', '        "beta": beta_tilde,\n        "beta_tilde": beta,\n',
  ["tests/test_ddpm.py::test_script_prints_the_five_variance_lines_and_best_isotropic_beats_both_fixed"]),
 ("M7 reverse_with_variance reads the variance table at t - 1", "scripts/ddpm.py",
  "common.identity_times(common.at(var, t), x_t)", "common.identity_times(common.at(var, t - 1), x_t)",
  ["tests/test_ddpm.py::test_reverse_with_variance_of_the_exact_network_of_gaussian_data_is_the_exact_reverse_kernel"]),
 ("M8 elbo_terms' L_T taken at step T - 1", "scripts/ddpm.py",
  "common.q_closed_form(x0, schedule.T, schedule)", "common.q_closed_form(x0, schedule.T - 1, schedule)",
  ["tests/test_bound.py::test_ddpm_elbo_terms_add_up_to_minus_K_on_average_over_data_with_mean_square_d"]),
 ("M6b beta and beta_tilde tables swapped where chapter 5 defines them", "scripts/05_ddpm.py",
  "    beta = variance_table(schedule, common.at(schedule.beta, steps))\n    beta_tilde = variance_table(schedule, beta_tilde)\n",
  "    beta, beta_tilde = variance_table(schedule, beta_tilde), variance_table(schedule, common.at(schedule.beta, steps))\n",
  ["tests/test_ddpm.py::test_script_prints_the_five_variance_lines_and_best_isotropic_beats_both_fixed"]),
 ("M9 elbo_terms' L_0 asks p(x0 | x1) at x0 instead of the sampled x1", "scripts/ddpm.py",
  "L_0 = -common.log_gaussian(x0, *reverse(x1, 1))", "L_0 = -common.log_gaussian(x0, *reverse(x0, 1))",
  ["tests/test_bound.py::test_ddpm_elbo_terms_add_up_to_minus_K_on_average_over_data_with_mean_square_d"]),
 ("M10 brute-force Bayes asks the device for float64 (mps has none)", "scripts/roll.py",
  "for part in x_t.cpu().double().split(chunk):", "for part in x_t.double().cpu().split(chunk):",
  ["tests/test_devices.py::test_bayes_optimal_eps_and_x0_moments_take_device_tensors"]),
 ("M11 nearest_on_curve asks the device for float64", "scripts/roll.py",
  "for part in torch.as_tensor(x).cpu().double().split(chunk):", "for part in torch.as_tensor(x).double().cpu().split(chunk):",
  ["tests/test_devices.py::test_scoring_samples_takes_device_tensors"]),
 ("M12 --start data computes q(x_T) and then starts from N(0, I) anyway", "scripts/06_fewer_steps.py",
  "common.sample_chain(reverse, args.n_samples, steps, run_generator, device, x_T=x_T)",
  "common.sample_chain(reverse, args.n_samples, steps, run_generator, device)",
  ["tests/test_fewer_steps.py::test_start_data_begins_every_run_at_the_same_draw_from_q_x_T_and_draws_no_figures"]),
 # issue 27's list: the inpainting samplers held to the conditional law of Gaussian data
 ("M13 reconstruction guidance steps up the gradient", "scripts/guidance.py",
  "return x_prev - (zeta / error.clamp_min(1e-8))", "return x_prev + (zeta / error.clamp_min(1e-8))",
  [LAWS + "test_reconstruction_guidance_reaches_near_the_conditional_law",
   LAWS + "test_reconstruction_guidance_lowers_the_visible_pixels_error_of_x0_hat_along_the_chain"]),
 ("M14 reconstruction guidance scaled by zeta / ||r||^2", "scripts/guidance.py",
  "return x_prev - (zeta / error.clamp_min(1e-8))", "return x_prev - (zeta / error.clamp_min(1e-8) ** 2)",
  [LAWS + "test_reconstruction_guidance_reaches_near_the_conditional_law"]),
 ("M15 RePaint's jump back up the chain one step short", "scripts/guidance.py",
  "x = jump_forward(x, t_lo, t_hi, schedule, generator)", "x = jump_forward(x, t_lo, t_hi - 1, schedule, generator)",
  [LAWS + "test_repaint_comes_closer_to_the_conditional_law_the_more_it_resamples"]),
 ("M16 RePaint's jump skipped", "scripts/guidance.py",
  "x = jump_forward(x, t_lo, t_hi, schedule, generator)", "x = x",
  [LAWS + "test_repaint_comes_closer_to_the_conditional_law_the_more_it_resamples"]),
 ("M17 probability-flow velocity (sigma^2 / 2)(x + sigma^2 grad log q)", "scripts/continuous.py",
  "return 0.5 * sigma ** 2 * x - 0.5 * sigma * eps_at(x, lam)", "return 0.5 * sigma ** 2 * x - 0.5 * sigma ** 3 * eps_at(x, lam)",
  ["tests/test_probability_flow.py::test_probability_flow_velocity_is_song_et_als_ode_in_the_log_snr"]),
]


def main():
    only = sys.argv[1:]
    missed = 0
    with tempfile.TemporaryDirectory() as folder:
        copy = pathlib.Path(folder)
        for part in ("scripts", "tests", "docs", "images"):
            shutil.copytree(ROOT / part, copy / part)
        shutil.copy(ROOT / "pytest.ini", copy / "pytest.ini")
        for name, path, old, new, tests in M:
            if only and name.split()[0] not in only:
                continue
            file = copy / path
            original = file.read_text()
            if original.count(old) != 1:
                print(f"{name}: ANCHOR NOT FOUND in {path} (found {original.count(old)} times): update it here")
                missed += 1
                continue
            file.write_text(original.replace(old, new))
            try:
                run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                                     cwd=copy, capture_output=True, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
            finally:
                file.write_text(original)
            failed = [line.split("::")[-1] for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
            message = next((line.strip()[1:].strip() for line in run.stdout.splitlines()
                            if line.strip().startswith("E ")), "")
            if run.returncode == 0:
                missed += 1
                print(f"{name}: NOT CAUGHT by {', '.join(t.split('::')[-1] for t in tests)}")
            else:
                print(f"{name}: caught by {failed[0] if failed else 'an error'}: {message[:160]}", flush=True)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
