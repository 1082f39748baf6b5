"""The autoencoder of chapter 12 (scripts/autoencoder.py): shapes 28 -> 7 -> 28, its KL against a
Monte Carlo estimate, the scale factor brings latents to unit variance, the decode of the encode
of training digits is close after a short training, and its checkpoint is refused in one line."""
import pytest
import torch

import autoencoder
import checkpoints
import mnist


def test_shapes_28_to_c_by_7_by_7_and_back():
    model = autoencoder.Autoencoder(latent_channels=3, width=8)
    mean, log_var = model.encode(torch.randn(5, 1, 28, 28))
    assert mean.shape == log_var.shape == (5, 3, 7, 7)
    z = autoencoder.draw(mean, log_var, torch.Generator().manual_seed(0))
    assert z.shape == (5, 3, 7, 7) and model.decode(z).shape == (5, 1, 28, 28)


def test_kl_matches_a_monte_carlo_estimate():
    """KL(q || N(0, I)) = E_q[log q(z) - log p(z)], estimated with 200,000 draws of z per image."""
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 2, 7, 7, generator=generator, dtype=torch.float64)
    log_var = torch.randn(3, 2, 7, 7, generator=generator, dtype=torch.float64) - 1.0
    closed = autoencoder.kl_to_standard_normal(mean, log_var)
    z = mean + (0.5 * log_var).exp() * torch.randn(20_000, 3, 2, 7, 7, generator=generator, dtype=torch.float64)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).flatten(2).sum(2)     # (draws, images)
    estimate, se = log_ratio.mean(0), log_ratio.std(0) / 20_000 ** 0.5
    assert torch.all((estimate - closed).abs() < 4 * se), (closed, estimate, se)


def test_the_scale_factor_brings_latents_to_unit_variance():
    latents = 5.5 * torch.randn(400, 2, 7, 7, generator=torch.Generator().manual_seed(1)) + 0.3
    scale = autoencoder.latent_scale(latents)
    assert abs(scale - 1 / 5.5) < 0.01 * scale, scale
    assert abs(float((scale * latents).std()) - 1.0) < 1e-6


def test_decode_of_encode_of_a_training_digit_is_close_after_a_short_training():
    """200 steps on 64 training digits: their reconstructions are nearer them (RMSE in levels) than
    0.8 of the mean digit's distance (measured: 0.67): the code carries each digit, not only the
    average digit, which a decoder that ignored its code would give."""
    torch.manual_seed(0)
    train_x = mnist.load_split()[0][:64]
    x = mnist.to_unit(train_x)
    model = autoencoder.Autoencoder(latent_channels=2, width=8)
    autoencoder.train(model, x, 200, 32, 3e-3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        reconstruction = model.decode(model.encode(x)[0])
    rmse = float(((reconstruction - x) * 127.5).square().mean().sqrt())
    baseline = float(((x.mean(0) - x) * 127.5).square().mean().sqrt())
    assert rmse < 0.8 * baseline, (rmse, baseline)


def test_a_missing_or_foreign_checkpoint_is_refused_in_one_line(tmp_path):
    model = autoencoder.Autoencoder(latent_channels=2, width=8)
    autoencoder.save(tmp_path / "ae.pt", model, 0.25)
    loaded, scale, _ = autoencoder.load(tmp_path / "ae.pt", "make it")
    assert scale == 0.25 and all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                                     model.state_dict().values()))
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    for name, says in [("absent.pt", "no checkpoint"), ("other.pt", "not an autoencoder")]:
        with pytest.raises(checkpoints.CheckpointError, match=says) as caught:
            autoencoder.load(tmp_path / name, "make it")
        assert "\n" not in str(caught.value) and "make it" in str(caught.value)
    autoencoder.save(tmp_path / "wide.pt", autoencoder.Autoencoder(latent_channels=2, width=8), 1.0)
    saved = torch.load(tmp_path / "wide.pt")
    saved["config"]["width"] = 16
    torch.save(saved, tmp_path / "wide.pt")
    with pytest.raises(checkpoints.CheckpointError, match="another shape"):
        autoencoder.load(tmp_path / "wide.pt", "make it")
