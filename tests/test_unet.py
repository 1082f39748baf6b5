"""The UNet of chapters 8-9 (scripts/unet.py) and its checkpoints (checkpoints.save_unet_checkpoint /
load_unet_checkpoint): the image's shape is kept, the output starts at zero yet trains, t and the
label change the output, and a checkpoint comes back the same or is refused in one line."""
import argparse

import pytest
import torch

import common
import checkpoints
from model import ReverseModel
from unet import UNet


def perturbed(model, seed=0):
    """The model with random output weights, so that what reaches the output can be seen."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.output.weight.copy_(torch.randn(model.output.weight.shape, generator=generator))
        model.output.bias.copy_(torch.randn(model.output.bias.shape, generator=generator))
    return model


def test_the_image_shape_is_kept_through_8_4_2_and_back():
    """eps has x_t's shape (n, 1, 8, 8) for several batch sizes, and the recorded stages go
    8 x 8 -> 4 x 4 -> 2 x 2 -> 4 x 4 -> 8 x 8, with and without attention."""
    for attention in (False, True):
        model = UNet(base_channels=8, attention=attention)
        for n in (1, 5):
            assert model(torch.randn(n, 1, 8, 8), torch.full((n,), 3)).shape == (n, 1, 8, 8)
        record = []
        model(torch.randn(2, 1, 8, 8), 7, record=record)
        sides = [shape[-1] for _, shape in record]
        assert sides == [8, 8, 4, 2] + [2] * attention + [2, 4, 8, 8], record


def test_the_output_starts_at_zero_and_leaves_it_after_one_step():
    """At initialisation eps = 0 exactly, for any input; one Adam step on ||eps - target||^2 moves it
    (a zero output that also froze the gradient of the layers below would pass the first check)."""
    torch.manual_seed(0)
    model = UNet(base_channels=8, n_classes=10)
    x_t, t = torch.randn(16, 1, 8, 8), torch.randint(1, 200, (16,))
    assert model(x_t, t).abs().max() == 0.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):  # the first step moves only the output layer; the second reaches the body
        loss = (model(x_t, t) - torch.randn(16, 1, 8, 8)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(x_t, t).abs().max() > 1e-3
    assert model.input.weight.grad.abs().max() > 0.0, "no gradient reaches the first convolution"


def test_the_output_depends_on_t_and_a_number_means_the_same_step_for_every_image():
    """With random output weights, steps 1 and 2 give different eps for the same x_t (the time code
    reaches the output), and t = 5 given as a number equals t = 5 given per image, int or float."""
    torch.manual_seed(0)
    model = perturbed(UNet(base_channels=8))
    x_t = torch.randn(4, 1, 8, 8)
    gap = (model(x_t, torch.ones(4, dtype=torch.long)) - model(x_t, torch.full((4,), 2))).abs().max()
    assert gap > 1e-3, gap
    assert torch.allclose(model(x_t, 5), model(x_t, torch.full((4,), 5)))
    assert torch.allclose(model(x_t, 5), model(x_t, torch.full((4,), 5.0)))


def test_the_label_is_added_and_none_means_the_null_row():
    """A conditional UNet: label=None gives the same eps as the null label (row 10), a digit's label
    a different one; an unconditional UNet refuses a label."""
    torch.manual_seed(0)
    model = perturbed(UNet(base_channels=8, n_classes=10))
    assert model.null_label == 10 and model.label_embedding.num_embeddings == 11
    x_t, t = torch.randn(3, 1, 8, 8), torch.full((3,), 9)
    null = model(x_t, t, torch.full((3,), model.null_label))
    assert torch.equal(model(x_t, t), null)
    assert (model(x_t, t, torch.tensor([0, 3, 7])) - null).abs().amin(dim=(1, 2, 3)).min() > 0.0
    with pytest.raises(ValueError, match="unconditional"):
        UNet(base_channels=8)(x_t, t, torch.tensor([0, 1, 2]))


def arguments():
    return argparse.Namespace(iters=3, seed=0)


def test_a_checkpoint_comes_back_with_the_same_eps_and_schedule(tmp_path):
    """Saved and loaded, a conditional UNet with attention gives the same eps, and the schedule
    is the one saved (not chapter 1's)."""
    torch.manual_seed(0)
    model = perturbed(UNet(base_channels=8, n_classes=10, attention=True))
    schedule = common.schedule_from_beta(torch.cat([torch.zeros(1), torch.linspace(1e-4, 0.1, 20)]).double())
    path = tmp_path / "unet.pt"
    checkpoints.save_unet_checkpoint(path, model, schedule, arguments(), 3)
    loaded, loaded_schedule, checkpoint = checkpoints.load_unet_checkpoint(path, conditional=True)
    x_t, t = torch.randn(2, 1, 8, 8), torch.tensor([4, 17])
    assert torch.equal(loaded(x_t, t, torch.tensor([1, 2])), model.eval()(x_t, t, torch.tensor([1, 2])))
    assert torch.equal(loaded_schedule.beta, schedule.beta) and checkpoint["iteration"] == 3


def test_wrong_checkpoints_are_refused_in_one_line(tmp_path):
    """Missing, garbage, a Swiss-roll checkpoint, an unconditional UNet where a conditional one is
    needed and the reverse, other data, another shape: each a CheckpointError of one line that
    says what to run."""
    schedule = common.schedule_from_beta(torch.cat([torch.zeros(1), torch.linspace(1e-4, 0.1, 20)]).double())
    plain, labelled = tmp_path / "plain.pt", tmp_path / "labelled.pt"
    checkpoints.save_unet_checkpoint(plain, UNet(base_channels=8), schedule, arguments(), 1)
    checkpoints.save_unet_checkpoint(labelled, UNet(base_channels=8, n_classes=10), schedule, arguments(), 1)
    roll_model = tmp_path / "roll.pt"
    checkpoints.save_checkpoint(roll_model, ReverseModel(), common.make_schedule(), arguments(), 1)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    other_data = tmp_path / "other.pt"
    saved = torch.load(plain, weights_only=True)
    torch.save({**saved, "data": {**saved["data"], "split_seed": 1}}, other_data)
    other_shape = tmp_path / "shape.pt"
    torch.save({**saved, "model_config": {**saved["model_config"], "base_channels": 16}}, other_shape)
    cases = [(tmp_path / "missing.pt", None, "no checkpoint"), (garbage, None, "not a readable"),
             (roll_model, None, "Swiss-roll"), (plain, True, "unconditional"),
             (labelled, False, "conditioned on 10 labels"), (other_data, None, "other data"),
             (other_shape, None, "another shape")]
    for path, conditional, words in cases:
        with pytest.raises(checkpoints.CheckpointError) as error:
            checkpoints.load_unet_checkpoint(path, conditional=conditional)
        message = str(error.value)
        assert words in message and "\n" not in message and "08_pictures.py" in message, message
    checkpoints.load_unet_checkpoint(plain, conditional=False)
    checkpoints.load_unet_checkpoint(labelled)


def test_the_default_is_chapter_8s_unet_and_other_sizes_keep_their_shape():
    """UNet() has the 493,089 parameters chapter 8's printout reports, and a checkpoint's config
    without the new arguments builds it; with channels and size the same module takes 28 x 28
    pixels (28 -> 14 -> 7) and 4 x 7 x 7 latents (7 -> 4 -> 2, each way up resized to the skip's
    size), eps the shape of x_t, with the same names and count of weights but the first and last
    convolutions'."""
    default = UNet()
    assert sum(p.numel() for p in default.parameters()) == 493_089
    old_config = {k: v for k, v in default.config.items() if k not in ("channels", "size")}
    assert UNet(**old_config).config == default.config
    for channels, size, sides in [(1, 28, [28, 28, 14, 7, 7, 14, 28, 28]), (4, 7, [7, 7, 4, 2, 2, 4, 7, 7])]:
        model = perturbed(UNet(base_channels=8, channels=channels, size=size))
        record = []
        eps = model(torch.randn(3, channels, size, size), torch.tensor([2, 50, 900]), record=record)
        assert eps.shape == (3, channels, size, size)
        assert [shape[-1] for _, shape in record] == sides, record
        assert record[1][0] == f"{size}x{size} block", record
        assert default.state_dict().keys() == model.state_dict().keys()
