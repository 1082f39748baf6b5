"""Chapter 13 (scripts/prompts.py, text_encoder.py, text_to_image.py): the two properties measured
on images whose answer is known by construction, the terciles, the template and its tokenizer,
cross-attention against a direct computation, guidance with a negative prompt against the
formula, and SDEdit at its two ends and on Gaussian data where the exact eps is known."""
import math

import numpy as np
import pytest
import torch

import common
import ddim
import prompts
import text_to_image
from prompts import NOT_ASKED
from text_encoder import CrossAttention, TextEncoder


# --- thickness and slant -------------------------------------------------------------------------

def stroke(slope, width=1.0, top=4, bottom=24, centre=14.0, level=255.0):
    """A 28 x 28 stroke leaning right by `slope` columns per row upwards: in row r its ink is
    `width` pixels wide, centred at column centre - slope (r - middle), split between neighbouring
    columns in proportion: every row has exactly that mass, and that centre for whole widths."""
    image = np.zeros((28, 28))
    middle = (top + bottom) / 2
    for r in range(top, bottom + 1):
        left = centre - slope * (r - middle) - width / 2 + 0.5     # the ink covers [left, left + width)
        for c in range(28):
            image[r, c] = level * max(0.0, min(c + 1, left + width) - max(c, left))
    return image


@pytest.mark.parametrize("slope", [-0.4, -0.1, 0.0, 0.25, 0.5])
def test_slant_of_a_stroke_is_its_slope_positive_leaning_right(slope):
    for width in (1.0, 3.0):   # whole widths: the split between columns keeps each row's centre exact
        measured = prompts.slant(stroke(slope, width)[None])[0]
        assert measured == pytest.approx(slope, abs=1e-9), f"stroke of slope {slope}, width {width}: slant {measured}"
    # leaning right means the top is to the right of the bottom
    image = stroke(slope, 1.0)
    rows_with_ink = np.nonzero(image.sum(1))[0]
    top_x = (image[rows_with_ink[0]] * np.arange(28)).sum() / image[rows_with_ink[0]].sum()
    bottom_x = (image[rows_with_ink[-1]] * np.arange(28)).sum() / image[rows_with_ink[-1]].sum()
    assert np.sign(top_x - bottom_x) == np.sign(slope)


def test_slant_flips_sign_in_a_mirror_and_is_zero_without_ink():
    rng = np.random.default_rng(0)
    images = rng.random((5, 28, 28)) ** 4 * 255
    assert prompts.slant(images[:, :, ::-1]) == pytest.approx(-prompts.slant(images), abs=1e-12)
    assert prompts.slant(np.zeros((1, 28, 28)))[0] == 0.0


def test_thickness_is_the_ink_of_strokes_of_known_width():
    for width in (1.0, 2.0, 3.5):
        image = stroke(0.3, width)
        assert prompts.thickness(image[None])[0] == pytest.approx(width * 21, rel=1e-12)
    half = stroke(0.0, 2.0, level=127.5)
    assert prompts.thickness(half[None])[0] == pytest.approx(21.0, rel=1e-12)


def test_terciles_split_each_class_in_thirds_and_use_the_asked_classes_cuts():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 3000)
    values = rng.normal(labels * 10.0, 1.0 + labels)        # each class its own centre and spread
    cuts = prompts.tercile_cuts(values, labels)
    thirds = prompts.tercile(values, labels, cuts)
    for c in range(10):
        counts = np.bincount(thirds[labels == c], minlength=3)
        assert np.abs(counts - (labels == c).sum() / 3).max() <= 1, f"class {c}: {counts}"
    # a value in the middle of class 9's range is thick for a nought and medium for a nine
    assert prompts.tercile([90.0, 90.0], [0, 9], cuts).tolist() == [2, 1]


# --- the template and the tokenizer ------------------------------------------------------------

def test_template_writes_english_prompts():
    assert prompts.sentence(7) == "a seven"
    assert prompts.sentence(8) == "an eight"
    assert prompts.sentence(1, NOT_ASKED, 1) == "an upright one"
    assert prompts.sentence(2, 0, 0) == "a thin two slanted to the left"
    assert prompts.sentence(7, 2, 2) == "a thick seven slanted to the right"
    assert prompts.sentence(NOT_ASKED) == ""


def test_tokenizer_round_trips_every_template_sentence_and_the_table_agrees():
    sentences = prompts.every_sentence()
    assert len(sentences) == len(set(sentences)) == 161
    for text in sentences:
        ids = prompts.encode(text)
        assert ids[0] == prompts.TOKEN_ID[prompts.START] and prompts.decode(ids) == text
    words = {word for text in sentences for word in text.split()}
    assert words == set(prompts.VOCABULARY[2:]), "every word of the vocabulary is used, and no other"
    label, thick, lean = torch.meshgrid(torch.arange(-1, 10), torch.arange(-1, 3), torch.arange(-1, 3), indexing="ij")
    label, thick, lean = label.flatten(), thick.flatten(), lean.flatten()
    keep = (label != NOT_ASKED) | ((thick == NOT_ASKED) & (lean == NOT_ASKED))
    table = prompts.tokens_for(label[keep], thick[keep], lean[keep])
    direct = prompts.tokenize([prompts.sentence(int(c), int(a), int(b))
                               for c, a, b in zip(label[keep], thick[keep], lean[keep])])
    assert torch.equal(table, direct)


def test_tokenizer_refuses_an_unknown_word_naming_the_vocabulary():
    with pytest.raises(ValueError, match=r"unknown word 'purple' .*the vocabulary is: a an zero one") as error:
        prompts.encode("a purple seven")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown word '<pad>'"):
        prompts.encode("a <pad> seven")


def test_training_prompts_mention_each_property_half_the_time_and_drop_a_tenth():
    n = 20000
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n,), generator=g)
    label, thick, lean = prompts.draw_asked(labels, torch.ones(n, dtype=torch.long), torch.full((n,), 2), g)
    dropped = label == NOT_ASKED
    se = math.sqrt(0.25 / n)
    assert float(dropped.float().mean()) == pytest.approx(prompts.P_DROP, abs=5 * se)
    assert bool((thick[dropped] == NOT_ASKED).all() and (lean[dropped] == NOT_ASKED).all())
    assert torch.equal(label[~dropped], labels[~dropped])
    kept = ~dropped
    assert float((thick[kept] == 1).float().mean()) == pytest.approx(prompts.P_MENTION, abs=5 * se / 0.9 ** 0.5)
    assert float((lean[kept] == 2).float().mean()) == pytest.approx(prompts.P_MENTION, abs=5 * se / 0.9 ** 0.5)


# --- the text encoder and cross-attention -----------------------------------------------------

def random_attention(channels=8, context_dim=6, dim=5, seed=0):
    torch.manual_seed(seed)
    block = CrossAttention(channels, context_dim, dim).double()
    torch.nn.init.normal_(block.out.weight)       # the zero start would hide every mistake
    torch.nn.init.normal_(block.out.bias)
    return block


def test_cross_attention_is_softmax_of_q_k_over_sqrt_d_times_v_computed_directly():
    block = random_attention()
    torch.manual_seed(1)
    h, context = torch.randn(2, 8, 3, 4).double(), torch.randn(2, 5, 6).double()
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = block(h, context, mask)
    normed = block.norm(h).detach().numpy()
    wq, wk, wv = (m.weight.detach().numpy() for m in (block.query, block.key, block.value))
    wo, bo = block.out.weight.detach().numpy(), block.out.bias.detach().numpy()
    c = context.numpy()
    for i in range(2):
        real = [l for l in range(5) if mask[i, l]]
        for y in range(3):
            for x in range(4):
                q = wq @ normed[i, :, y, x]
                scores = np.array([q @ (wk @ c[i, l]) / math.sqrt(5) for l in real])
                weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
                expected = h[i, :, y, x].numpy() + wo @ sum(a * (wv @ c[i, l]) for a, l in zip(weights, real)) + bo
                assert out[i, :, y, x].detach().numpy() == pytest.approx(expected, abs=1e-10)


def test_cross_attention_with_one_token_adds_the_same_vector_to_every_pixel():
    block = random_attention()
    torch.manual_seed(2)
    h, context = torch.randn(3, 8, 4, 4).double(), torch.randn(3, 1, 6).double()
    shift = (block(h, context, torch.ones(3, 1, dtype=torch.bool)) - h).detach()
    expected = block.out(block.value(context[:, 0])).detach()           # W_O W_V token + b_O
    assert torch.allclose(shift, expected[:, :, None, None].expand_as(shift), atol=1e-12)
    assert not torch.allclose(shift[0], shift[1]), "the shift is per image"


def test_masked_padding_changes_nothing_in_attention_or_the_encoder():
    block = random_attention()
    torch.manual_seed(3)
    h, context = torch.randn(2, 8, 2, 3).double(), torch.randn(2, 3, 6).double()
    short = block(h, context, torch.ones(2, 3, dtype=torch.bool))
    padded_context = torch.cat([context, 100 * torch.randn(2, 4, 6).double()], dim=1)
    padded = block(h, padded_context, torch.tensor([[True] * 3 + [False] * 4] * 2))
    assert torch.allclose(short, padded, atol=1e-12)

    torch.manual_seed(4)
    encoder = TextEncoder(len(prompts.VOCABULARY), prompts.MAX_TOKENS, dim=16, layers=2).double()
    tokens = prompts.tokenize(["a thin seven", "an eight slanted to the left"])
    vectors, mask = encoder(tokens)
    assert mask.tolist()[0] == [True] * 4 + [False] * 4
    for row, text in enumerate(["a thin seven", "an eight slanted to the left"]):
        alone, _ = encoder(torch.tensor([prompts.encode(text)]))
        assert torch.allclose(vectors[row, mask[row]], alone[0], atol=1e-10), f"padding moved {text!r}"


def test_the_encoder_tells_word_order_apart():
    torch.manual_seed(5)
    encoder = TextEncoder(len(prompts.VOCABULARY), prompts.MAX_TOKENS, dim=16).double()
    a, _ = encoder(prompts.tokenize(["a thin seven"]))
    b, _ = encoder(torch.tensor([[prompts.TOKEN_ID[w] for w in ("<start>", "a", "seven", "thin")]]))
    assert not torch.allclose(a[:, :4], b, atol=1e-3)


# --- guidance with a negative prompt ------------------------------------------------------------

class PromptStandIn(torch.nn.Module):
    """An eps-network that reads tokens: forward(x_t, t, tokens=...)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.words = torch.nn.Embedding(len(prompts.VOCABULARY), 4)
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x_t, t, tokens):
        code = self.words(tokens).sum(1)[:, :, None, None] + t.float()[:, None, None, None] / 100
        return torch.tanh(self.conv(x_t + code))


@pytest.mark.parametrize("w", [0.0, 1.0, 6.5])
def test_negative_prompt_guidance_is_the_formula_with_eps_neg_for_eps_null(w):
    network = PromptStandIn()
    torch.manual_seed(7)
    x, t = torch.randn(3, 4, 7, 7), torch.tensor([5, 50, 500])
    tokens = prompts.tokenize(["a seven", "a thin two", "an eight slanted to the left"])
    negative = prompts.tokenize(["a thick seven", "a thick two", "an upright eight"])
    with torch.no_grad():
        eps_c, eps_neg, eps_empty = (network(x, t, p) for p in (tokens, negative, text_to_image.empty_prompt(3)))
        s = 1.0 + w    # the reference's convention: eps(neg) + s (eps(c) - eps(neg))
        assert torch.allclose(text_to_image.prompted(network, tokens, w, negative)(x, t),
                              eps_neg + s * (eps_c - eps_neg), atol=1e-5)
        assert torch.allclose(text_to_image.prompted(network, tokens, w)(x, t),
                              eps_empty + s * (eps_c - eps_empty), atol=1e-5)


# --- image to image ---------------------------------------------------------------------------

def gaussian_eps(mean, var, schedule):
    """The exact eps for data N(mean, var I): E[eps | x_t] = sqrt(1 - a)(x_t - sqrt(a) mean) /
    (a var + 1 - a), a = alpha_bar_t, for the step t (a number) that the chains ask about."""
    def eps_at(x_t, t):
        a = schedule.alpha_bar[t].to(x_t)
        return torch.sqrt(1 - a) * (x_t - torch.sqrt(a) * mean) / (a * var + 1 - a)
    return eps_at


@pytest.fixture(scope="module")
def schedule():
    return common.make_schedule(200, 1e-4, -12.0)


def test_sdedit_at_strength_one_is_the_ordinary_sampler_from_noise(schedule):
    eps_at = gaussian_eps(torch.tensor([1.0, -2.0, 0.5]), 0.3, schedule)
    x0 = torch.randn(50, 3, generator=torch.Generator().manual_seed(8)) * 3
    edited = text_to_image.sdedit(eps_at, x0, 1.0, schedule, 20, torch.Generator().manual_seed(9))
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(9))
    ordinary = ddim.deterministic_chain(eps_at, z, schedule, 20)
    leak = math.sqrt(float(schedule.alpha_bar[-1]))        # what is left of the source at t = T
    assert leak < 3e-3
    assert (edited - ordinary).abs().max() < 10 * leak * float(x0.abs().max())


def test_sdedit_returns_the_source_as_strength_goes_to_zero(schedule):
    eps_at = gaussian_eps(torch.zeros(3), 1.0, schedule)
    x0 = torch.randn(50, 3, generator=torch.Generator().manual_seed(10)) * 2 + 4   # far from the data
    distances = [float((text_to_image.sdedit(eps_at, x0, s, schedule, 50, torch.Generator().manual_seed(11))
                        - x0).norm(dim=1).mean()) for s in (0.5, 0.2, 0.05, 0.02, 0.0)]
    assert all(a > b for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] == 0.0 and distances[-2] < 0.03 * distances[0], distances


@pytest.mark.parametrize("solver", ["ddim", "dpm++2m"])
def test_sdedit_from_data_keeps_the_data_law_at_every_strength(schedule, solver):
    """With the exact eps, noising data to t0 and running the chain back lands on the data's law again."""
    mean, var = torch.tensor([1.0, -2.0]).double(), 0.25
    eps_at = gaussian_eps(mean, var, schedule)
    x0 = mean + math.sqrt(var) * torch.randn(4000, 2, generator=torch.Generator().manual_seed(12)).double()
    for s in (0.3, 0.7):
        out = text_to_image.sdedit(eps_at, x0, s, schedule, 100, torch.Generator().manual_seed(13), solver)
        assert out.mean(0) == pytest.approx(mean, abs=4 * math.sqrt(var / 4000))
        assert out.var(0) == pytest.approx(torch.full((2,), var).double(), rel=0.08)
        assert float((out - x0).norm(dim=1).mean()) > 0.1, "the edit moved the points"


# --- the UNet with text ---------------------------------------------------------------------------

def test_a_unet_with_text_starts_as_the_unet_without_and_then_reads_the_prompt():
    from unet import UNet
    text = {"vocabulary_size": len(prompts.VOCABULARY), "max_tokens": prompts.MAX_TOKENS, "dim": 16}
    torch.manual_seed(14)
    plain = UNet(16, channels=4, size=7)
    reading = UNet(16, channels=4, size=7, text=text)
    missing, unexpected = reading.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("text_encoder.", "cross.")) for k in missing)
    torch.nn.init.normal_(reading.output.weight)
    plain.output.weight.data.copy_(reading.output.weight.data)
    x, t = torch.randn(3, 4, 7, 7), torch.tensor([3, 30, 300])
    tokens = prompts.tokenize(["a seven", "a thin two slanted to the left", ""])
    maps = []
    with torch.no_grad():
        assert torch.equal(reading(x, t, tokens=tokens, maps=maps), plain(x, t)), "zero cross-attention outputs"
        assert [m.shape for m in maps] == [(3, 7, 7, 8), (3, 4, 4, 8), (3, 2, 2, 8), (3, 2, 2, 8), (3, 4, 4, 8), (3, 7, 7, 8)]
        assert torch.allclose(maps[0].sum(-1), torch.ones(3, 7, 7)) and float(maps[0][2, ..., 1:].abs().max()) == 0.0
        for block in reading.cross:
            torch.nn.init.normal_(block.out.weight, std=0.1)
        other = prompts.tokenize(["a thick seven", "a thin two slanted to the left", ""])
        eps, eps_other = reading(x, t, tokens=tokens), reading(x, t, tokens=other)
    assert not torch.allclose(eps[0], eps_other[0]) and torch.equal(eps[1:], eps_other[1:])
    with pytest.raises(ValueError, match="takes no tokens"):
        plain(x, t, tokens=tokens)
    with pytest.raises(ValueError, match="reads a prompt"):
        reading(x, t)


# --- the chapter script -----------------------------------------------------------------------------

def test_the_chapter_refuses_a_missing_checkpoint_in_one_line_naming_the_command(start_script, tmp_path):
    common_args = ["--images", tmp_path, "--out", tmp_path / "p.npz", "--device", "cpu"]
    no_autoencoder = start_script("13_text_to_image.py", "--autoencoder", tmp_path / "missing.pt",
                                  "--checkpoint", tmp_path / "c.pt", *common_args)
    import autoencoder
    autoencoder.save(tmp_path / "ae.pt", autoencoder.Autoencoder(width=8), 1.0)
    no_unet = start_script("13_text_to_image.py", "--autoencoder", tmp_path / "ae.pt", "--reuse",
                           "--checkpoint", tmp_path / "missing_unet.pt", *common_args)
    for run, command in ((no_autoencoder.wait(), "python scripts/12_latent_space.py"),
                         (no_unet.wait(), "without --reuse")):
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 1 and len(lines) == 1 and command in lines[0], run.stderr
    assert not (tmp_path / "p.npz").exists()
