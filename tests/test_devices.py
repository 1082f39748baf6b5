"""Apple's mps has no float64: every function that may be handed a tensor from the device must
bring it to the CPU before it asks for float64 (`.cpu().double()`, never `.double().cpu()`).
A stand-in device tensor that refuses float64 is passed through each of them."""
import pytest
import torch

import common
import roll


class NoFloat64Device(torch.Tensor):
    """A float32 tensor that stands for one on mps: any float64 tensor made from it while it is
    still "on the device" raises, as mps does; `.cpu()` returns an ordinary CPU tensor, and every
    other result made from it stays on the stand-in device."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.cpu:
            return args[0].as_subclass(torch.Tensor).clone()
        result = super().__torch_function__(func, types, args, kwargs or {})
        if isinstance(result, NoFloat64Device) and result.dtype == torch.float64:
            raise TypeError(f"{func.__name__} asked the device for float64, which mps does not have: "
                            f"call .cpu() first")
        return result


def on_device(x):
    return x.float().as_subclass(NoFloat64Device)


def test_the_stand_in_refuses_float64_on_the_device_and_allows_it_after_cpu():
    x = on_device(torch.ones(3, 2))
    with pytest.raises(TypeError, match="float64"):
        x.double()
    with pytest.raises(TypeError, match="float64"):
        x.to(torch.float64)
    assert x.cpu().double().dtype == torch.float64 and type(x.cpu()) is torch.Tensor
    assert isinstance(x * 2.0, NoFloat64Device), "results made on the device stay there"


SCHEDULE = common.make_schedule()


def points(n=40, seed=0):
    x0 = roll.swiss_roll(n, torch.Generator().manual_seed(seed))
    return on_device(common.x_t_from_eps(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)),
                                         10, SCHEDULE))


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_bayes_optimal_reverse_takes_device_tensors_without_float64_on_the_device(covariance):
    reverse = roll.bayes_optimal_reverse(SCHEDULE, covariance, n_curve=500)
    for t in (1, 10):
        mean, cov = reverse(points(), t)
        assert mean.dtype == cov.dtype == torch.float32 and mean.shape == (40, 2), f"t = {t}: {mean.dtype}, {mean.shape}"


def test_bayes_optimal_eps_and_x0_moments_take_device_tensors():
    eps, _ = roll.bayes_optimal_eps(SCHEDULE, n_curve=500)(points(), 10)
    mean, cov = roll.x0_posterior_moments(points(), 10, SCHEDULE, n_curve=500)
    assert eps.dtype == torch.float32 and mean.dtype == cov.dtype == torch.float64


def test_scoring_samples_takes_device_tensors():
    distance, u = roll.nearest_on_curve(points(), n_curve=500)
    scores = roll.score_samples(points(200))
    assert distance.shape == u.shape == (40,) and 0.0 <= scores["off_curve"] <= 1.0


def test_eps_moments_takes_a_network_that_answers_on_the_device():
    def network(x_t, t):   # an eps-network living on the device
        return on_device(0.5 * x_t.cpu()), None

    mean_sq_eps, mean_sq_x0_error = roll.eps_moments(network, SCHEDULE, 50, torch.Generator().manual_seed(2))
    assert mean_sq_eps[2:].isfinite().all() and mean_sq_x0_error[2:].isfinite().all()


def test_mean_and_se_bits_takes_device_tensors():
    mean, se = roll.mean_and_se_bits(on_device(torch.arange(10.0)))
    assert abs(mean - common.nats_to_bits(4.5)) < 1e-9 and se > 0
