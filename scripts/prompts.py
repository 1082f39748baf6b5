"""Prompts made from the digits themselves (README chapter 13, "Sentences from pixels").

Every MNIST digit has a label and two properties we can measure from its pixels:
- thickness, the ink mass: the sum of its grey levels over 255, i.e. how many fully black pixels
  the same ink would fill (`thickness`);
- slant, from the ink's intensity-weighted central moments: with x the column (to the right) and
  y the row (downwards), slant = -mu_11 / mu_02, the sideways shift of the ink per row upwards,
  positive when the digit leans to the right (`slant`).
Each is cut into terciles per class on the training digits (`tercile_cuts`), so "thick" means
the thickest third of the sevens, not of all digits: thin / medium / thick, left / upright /
right, coded 0 / 1 / 2, and -1 where a prompt does not mention it (`tercile`).

A template writes a digit's prompt, each property mentioned or not at random, so that "a seven"
and "a thin seven slanted to the left" are both prompts the model sees (`sentence`). The words
are few (VOCABULARY): a tokenizer is a dictionary from word to number. Stable Diffusion's tokenizer
has 49,408 byte-pair tokens because it must read any English sentence, spelling rare words out of
pieces; ours reads only sentences the template can write, 21 words.
"""
import numpy as np
import torch

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THICKNESS_WORDS = ("thin", "medium", "thick")                 # tercile 0, 1, 2 of the ink mass
SLANT_WORDS = ("slanted to the left", "upright", "slanted to the right")   # tercile 0, 1, 2 of slant
AN_BEFORE = ("eight", "upright")      # the words of the template that start with a vowel sound
PAD, START = "<pad>", "<start>"       # padding after a prompt; the token every prompt starts with
VOCABULARY = (PAD, START, "a", "an", *DIGIT_WORDS, *THICKNESS_WORDS,
              "upright", "slanted", "to", "the", "left", "right")
TOKEN_ID = {word: i for i, word in enumerate(VOCABULARY)}
MAX_TOKENS = 8                        # <start> a thick seven slanted to the right
NOT_ASKED = -1                        # a property the prompt does not mention; a label: no prompt
P_MENTION = 0.5                       # each property is in a training prompt with this probability
P_DROP = 0.1                          # the whole prompt dropped: the empty prompt (guidance's null)


# --- two properties measured from the pixels ---------------------------------------------------

def thickness(levels):
    """The ink mass of images (n, 28, 28) of grey levels 0..255: sum of the levels / 255, in
    fully-black pixels. Float64 numpy (n,)."""
    return np.asarray(levels, dtype=np.float64).reshape(len(levels), -1).sum(axis=1) / 255.0


def slant(levels):
    """-mu_11 / mu_02 of images (n, H, W) of grey levels, the central moments weighted by ink:
    mu_11 = sum I (x - x_bar)(y - y_bar), mu_02 = sum I (y - y_bar)^2, x the column, y the row
    (downwards). A stroke x = x_0 - k y (leaning right by k columns per row up) has slant k.
    An image without ink has slant 0. Float64 numpy (n,)."""
    ink = np.asarray(levels, dtype=np.float64)
    rows, columns = np.indices(ink.shape[1:])
    mass = ink.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    y_bar = (ink * rows).sum(axis=(1, 2)) / safe
    x_bar = (ink * columns).sum(axis=(1, 2)) / safe
    dy = rows[None] - y_bar[:, None, None]
    dx = columns[None] - x_bar[:, None, None]
    mu_11, mu_02 = (ink * dx * dy).sum(axis=(1, 2)), (ink * dy * dy).sum(axis=(1, 2))
    return np.where(mu_02 > 0, -mu_11 / np.where(mu_02 > 0, mu_02, 1.0), 0.0)


def tercile_cuts(values, labels):
    """The two cuts per class that split `values` of the training digits into thirds: (10, 2),
    row c the 1/3 and 2/3 quantiles of the digits labelled c."""
    values, labels = np.asarray(values), np.asarray(labels)
    return np.stack([np.quantile(values[labels == c], [1 / 3, 2 / 3]) for c in range(len(DIGIT_WORDS))])


def tercile(values, labels, cuts):
    """Each value's third among its class's training digits: 0 below the first cut, 1 between,
    2 above the second (int64 numpy (n,)). `labels` is the class whose cuts apply: for a sample,
    the digit its prompt asked for."""
    values, labels = np.asarray(values), np.asarray(labels)
    return (values >= cuts[labels, 0]).astype(np.int64) + (values >= cuts[labels, 1])


# --- the template ------------------------------------------------------------------------------

def sentence(label, thickness_asked=NOT_ASKED, slant_asked=NOT_ASKED):
    """The prompt for a digit: "a seven", "a thick upright seven", "an eight slanted to the left";
    label NOT_ASKED gives the empty prompt "" (guidance's "no prompt")."""
    if label == NOT_ASKED:
        return ""
    words = [THICKNESS_WORDS[thickness_asked]] if thickness_asked != NOT_ASKED else []
    words += ["upright", DIGIT_WORDS[label]] if slant_asked == 1 else [DIGIT_WORDS[label]]
    if slant_asked in (0, 2):
        words.append(SLANT_WORDS[slant_asked])
    return " ".join(["an" if words[0] in AN_BEFORE else "a", *words])


def draw_asked(labels, thickness_terciles, slant_terciles, generator=None,
               p_mention=P_MENTION, p_drop=P_DROP):
    """What a training batch's prompts say about its digits: each property kept with probability
    p_mention (else NOT_ASKED), and with probability p_drop the whole prompt dropped (label
    NOT_ASKED, the empty prompt), so one network learns eps(x, prompt) and eps(x, empty).
    Tensors (n,) in, (label, thickness, slant) asked out."""
    n = len(labels)
    mention = torch.rand(2, n, generator=generator) < p_mention
    drop = torch.rand(n, generator=generator) < p_drop
    not_asked = torch.full((n,), NOT_ASKED, dtype=torch.long)
    return (torch.where(drop, not_asked, labels),
            torch.where(mention[0] & ~drop, thickness_terciles, not_asked),
            torch.where(mention[1] & ~drop, slant_terciles, not_asked))


# --- words to numbers --------------------------------------------------------------------------

def encode(text):
    """A prompt's token ids: <start>, then one id per word (lower case, split at spaces).
    A word outside the vocabulary is refused in one line that lists the vocabulary."""
    ids = [TOKEN_ID[START]]
    for word in text.lower().split():
        if word not in TOKEN_ID or word in (PAD, START):
            raise ValueError(f"unknown word {word!r} in the prompt {text!r}; the vocabulary is: "
                             f"{' '.join(VOCABULARY[2:])}")
        ids.append(TOKEN_ID[word])
    if len(ids) > MAX_TOKENS:
        raise ValueError(f"the prompt {text!r} has {len(ids) - 1} words; at most {MAX_TOKENS - 1} fit")
    return ids


def decode(ids):
    """The sentence of a row of token ids (padding and <start> left out)."""
    return " ".join(VOCABULARY[i] for i in ids if VOCABULARY[i] not in (PAD, START))


def tokenize(texts):
    """Prompts as one tensor of token ids (n, MAX_TOKENS), each row padded with <pad> (id 0)."""
    tokens = torch.full((len(texts), MAX_TOKENS), TOKEN_ID[PAD], dtype=torch.long)
    for row, text in enumerate(texts):
        ids = encode(text)
        tokens[row, :len(ids)] = torch.tensor(ids)
    return tokens


def every_prompt():
    """(label, thickness, slant) of the 160 prompts that name a digit, tensors (160,), in the
    order of every_sentence() (after its empty prompt)."""
    grid = torch.meshgrid(torch.arange(len(DIGIT_WORDS)), torch.arange(NOT_ASKED, 3), torch.arange(NOT_ASKED, 3),
                          indexing="ij")
    return tuple(a.flatten() for a in grid)


def every_sentence():
    """Every prompt the template can write, the empty one first: 1 + 10 x 4 x 4 = 161."""
    return [""] + [sentence(*map(int, asked)) for asked in zip(*every_prompt())]


TOKEN_TABLE = tokenize(every_sentence())      # the rows tokens_for looks up


def table_row(label, thickness_asked, slant_asked):
    """The row of TOKEN_TABLE (and the index in every_sentence()) of the prompts (label, thickness,
    slant) asked for, tensors or arrays (n,) with NOT_ASKED where not said: one number per prompt."""
    row = 1 + 16 * label + 4 * (thickness_asked + 1) + (slant_asked + 1)
    return row * (label != NOT_ASKED)


def tokens_for(label, thickness_asked, slant_asked):
    """The token ids (n, MAX_TOKENS) of the prompts (label, thickness, slant) asked for (tensors
    (n,), NOT_ASKED where not said): rows of TOKEN_TABLE, tokenize(every_sentence()) computed once."""
    return TOKEN_TABLE[table_row(*(torch.as_tensor(a, dtype=torch.long)
                                   for a in (label, thickness_asked, slant_asked)))]
