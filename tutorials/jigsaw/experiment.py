"""MNIST jigsaw puzzles with a Sinkhorn network ([GS] section 5.2, Table 2).

A digit is cut into a ``g x g`` grid of pieces (:func:`~pyro_permutations.nn.image_to_pieces`)
which are scrambled by a random permutation; the network sees only the scrambled pieces. Each
piece goes through the same small CNN (g1: a 5 x 5 convolution with 64 channels, ReLU and
2 x 2 max-pooling, flattened) and a linear head (g2) gives it a row of ``g^2`` scores, one per
position. Training minimises the squared error between the digit and the soft reconstruction
``P^T x~`` over Gumbel-Sinkhorn samples ``P``; testing decodes the noiseless scores with the
Hungarian algorithm and compares the permutation with the true one.

Grids that do not divide 28 (3, 5, 6) use the digit resized (bilinear) to 30 x 30
(:func:`~pyro_permutations.nn.resize_to_grid`), or with ``fit="crop"`` cropped at its centre to
27, 25 and 24 pixels (:func:`~pyro_permutations.nn.crop_to_grid`). [GS] does not say what it
did. The choice matters through the blank pieces: identical pieces of one digit can be swapped
without changing the picture, so no method can tell their true positions apart, and cropping
leaves more of them blank than resizing does (see :func:`tie_limited_kendall_tau`).
"""

import time

import torch
from tqdm.auto import tqdm

from pyro_permutations.nn import (
    SinkhornNetwork,
    crop_to_grid,
    image_to_pieces,
    kendall_tau_mean,
    l1_error,
    l2_error,
    pieces_to_image,
    prop_any_wrong,
    prop_wrong,
    prop_wrong_objects,
    reconstruct,
    reconstruction_loss,
    resize_to_grid,
    scramble,
)
from pyro_permutations.ops import kendall_tau, log_sinkhorn

#: The training set-up (ours: [GS] does not give its jigsaw hyper-parameters). The CNN is the
#: one described for [GS]'s jigsaw experiment: one 5 x 5 convolution, 64 channels, max-pool 2.
REFERENCE = {
    "channels": 64,
    "kernel": 5,
    "lr": 3e-3,
    "batch": 32,
    "temperature": 1.0,
    "noise_factor": 1.0,
    "samples": 5,
    "n_iters": 20,
    "fit": "resize",
}

FITS = {"resize": resize_to_grid, "crop": crop_to_grid}

#: The largest grid the tutorials accept: 2-pixel pieces of the 28-pixel digits, the least
#: that the piece networks' 2 x 2 max-pooling needs (from 15 on, a cropped digit has 1-pixel
#: pieces and the network no features at all).
MAX_GRID = 14


def fit_to_grid(images, grid, fit):
    """Digits ``(B, 1, 28, 28)`` resized or cropped (``fit``) so that ``grid`` divides them."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {sorted(FITS)}, got {fit!r}")
    return FITS[fit](images, grid)


def piece_size(grid, fit, image_size=28):
    """Side of a piece once the image fits the grid (3 x 3: 10 if resized, 9 if cropped)."""
    return -(-image_size // grid) if fit == "resize" else image_size // grid


#: Piece networks g1 for :func:`make_model`, chosen by ``config["piece_net"]``. ``"cnn"`` (the
#: default) is the network described for [GS]; ``"deep"`` is ours: two 3 x 3 convolutions (64
#: and 128 channels), max-pool 2 and a 512-unit hidden layer: 1.7 million parameters at 3 x 3
#: and 0.67 million at 4 x 4, against 16,000 and 11,000 for ``"cnn"`` (3.3 million at 2 x 2,
#: where the hidden layer sees 7 x 7 x 128 features). ``"deep-context"`` is ``"deep"`` in a
#: network that also shows each piece the mean features of its puzzle
#: (:class:`~pyro_permutations.nn.SinkhornNetwork` with ``context=True``; not in [GS]).
PIECE_NETS = ("cnn", "deep", "deep-context")

#: Changes to REFERENCE that go with each piece network: the deeper one trains at a lower
#: learning rate.
#: The piece networks that also show each piece its puzzle (``SinkhornNetwork(context=True)``).
CONTEXT_NETS = ("deep-context",)

PIECE_NET_CHANGES = {
    "cnn": {},
    "deep": {"piece_net": "deep", "lr": 1e-3},
    "deep-context": {"piece_net": "deep-context", "lr": 1e-3},
}


def _piece_net(config, side):
    """``(g1, feature_dim)`` for pieces ``(1, side, side)``."""
    kind = config.get("piece_net", "cnn")
    if kind == "cnn":
        channels, kernel = config["channels"], config["kernel"]
        g1 = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, kernel, padding=kernel // 2),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
        )
        return g1, channels * (side // 2) ** 2
    if kind in ("deep", "deep-context"):
        hidden = 512
        g1 = torch.nn.Sequential(
            torch.nn.Conv2d(1, 64, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(64, 128, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(128 * (side // 2) ** 2, hidden),
            torch.nn.ReLU(),
        )
        return g1, hidden
    raise ValueError(f"piece_net must be one of {PIECE_NETS}, got {kind!r}")


def make_model(config):
    """The Sinkhorn network for ``config["grid"]`` x ``config["grid"]`` puzzles of 28 x 28
    digits, with the piece network ``config.get("piece_net", "cnn")`` (see PIECE_NETS)."""
    side = piece_size(config["grid"], config["fit"])
    g1, features = _piece_net(config, side)
    return SinkhornNetwork(
        g1,
        n=config["grid"] ** 2,
        feature_dim=features,
        temperature=config["temperature"],
        noise_factor=config["noise_factor"],
        samples_per_input=config["samples"],
        n_iters=config["n_iters"],
        context=config.get("piece_net", "cnn") in CONTEXT_NETS,
    )


def make_puzzles(images, grid, generator=None):
    """Cut ``images`` ``(B, 1, H, W)`` (already fitted to the grid, see :func:`fit_to_grid`)
    into ``grid x grid`` pieces and scramble each.

    :returns: ``(scrambled, ordered, perm)``: pieces ``(B, n, 1, h, h)`` and the true
        permutations ``(B, n)``; scrambled piece ``i`` belongs at position ``perm[i]``.
    """
    ordered = image_to_pieces(images, grid)
    batch, n = ordered.shape[:2]
    perm = torch.rand(batch, n, generator=generator).argsort(dim=-1).to(images.device)
    return scramble(ordered, perm), ordered, perm


def train(config, train_images, device="cpu", progress=True):
    """Train a fresh model on random batches of training digits, each scrambled afresh.

    :returns: ``(model, seconds, final_loss)``; ``seconds`` is the wall time of the loop.
    """
    torch.manual_seed(config["seed"] * 1000 + config["grid"])
    model = make_model(config).to(device)
    model.train()
    images = fit_to_grid(train_images, config["grid"], config["fit"]).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=config["lr"])
    name = f"{config['grid']}x{config['grid']}"
    bar = tqdm(range(config["steps"]), desc=f"train {name}", disable=not progress)
    start = time.perf_counter()
    loss = torch.tensor(float("nan"))
    running = None
    for step in bar:
        index = torch.randint(len(images), (config["batch"],))
        scrambled, ordered, _ = make_puzzles(images[index.to(device)], config["grid"])
        loss = reconstruction_loss(ordered, scrambled, model(scrambled))
        optim.zero_grad()
        loss.backward()
        optim.step()
        if step % 25 == 0:
            value = loss.item()
            running = value if running is None else 0.8 * running + 0.2 * value
            bar.set_postfix(loss=f"{running:.2e}")
    final = loss.item()  # also waits for the device
    seconds = time.perf_counter() - start
    bar.close()
    return model, seconds, final


def held_out_puzzles(test_images, grid, fit, seed):
    """The fixed test puzzles for ``grid``: the same for every model and rerun."""
    generator = torch.Generator().manual_seed(7919 * seed + grid)
    return make_puzzles(fit_to_grid(test_images, grid, fit), grid, generator=generator)


@torch.no_grad()
def evaluate(model, test_images, fit, seed, device="cpu", chunk=500):
    """Kendall tau, Prop. wrong, Prop. any wrong, l1 and l2 on every test digit, decoded
    without noise by the Hungarian algorithm (the matching operator). l1 and l2 are mean
    absolute and squared pixel errors of the hard reconstruction, pixels in [0, 1].
    ``kendall_tau_se`` is the standard error of the mean Kendall tau over the test puzzles,
    ``std / sqrt(B)``: how far the mean could move on another draw of test digits.
    ``prop_wrong_pieces`` is Prop. wrong with swaps of identical pieces counted right
    (:func:`~pyro_permutations.nn.prop_wrong_objects`): the share of visibly wrong placements."""
    model.eval()
    grid = round(model.n**0.5)
    scrambled, ordered, perm = held_out_puzzles(test_images, grid, fit, seed)
    inferred = torch.cat(
        [model(scrambled[i : i + chunk].to(device)).cpu() for i in range(0, len(perm), chunk)]
    )
    rebuilt = reconstruct(scrambled, inferred)
    taus = kendall_tau(inferred, perm)
    return {
        "kendall_tau": taus.mean().item(),
        "kendall_tau_se": (taus.std() / len(taus) ** 0.5).item(),
        "prop_wrong": prop_wrong(inferred, perm).item(),
        "prop_any_wrong": prop_any_wrong(inferred, perm).item(),
        "prop_wrong_pieces": prop_wrong_objects(rebuilt, ordered, object_dims=3).item(),
        "l1": l1_error(rebuilt, ordered).item(),
        "l2": l2_error(rebuilt, ordered).item(),
    }


@torch.no_grad()
def reconstructions(model, scrambled, temperatures, device="cpu"):
    """Images rebuilt from scrambled pieces ``(B, n, 1, h, h)``: the soft reconstructions
    ``S(X / tau)^T x~`` at each temperature (noiseless scores ``X``, Sinkhorn run to
    convergence), then the hard one ``M(X)^T x~``.

    :returns: a list of image tensors ``(B, 1, H, W)``, one per temperature, then the hard one.
    """
    model.eval()
    grid = round(model.n**0.5)
    x = scrambled.to(device)
    scores = model.scores(x)
    out = []
    for tau in temperatures:
        soft = log_sinkhorn(scores / tau).exp()
        out.append(pieces_to_image(reconstruct(x, soft), grid).cpu())
    out.append(pieces_to_image(reconstruct(x, model(x)), grid).cpu())
    return out


def tie_limited_prop_wrong(test_images, grid, fit, seed):
    """The expected Prop. wrong of a solver that is right up to swaps of identical pieces.

    A group of ``k`` pieces of one digit that are equal pixel for pixel, placed at random among
    its ``k`` true positions, puts ``k - 1`` of them in a wrong position on average (a random
    permutation of ``k`` has one fixed point on average). So the bound is
    ``sum over groups (k - 1) / (B n)``, exactly, for the ``B`` test puzzles of ``n`` pieces:
    a lower bound on the Prop. wrong of any method that counts positions by index.
    """
    _, ordered, _ = held_out_puzzles(test_images, grid, fit, seed)
    batch, n = ordered.shape[:2]
    flat = ordered.flatten(2)
    wrong = 0
    for b in range(batch):
        _, counts = torch.unique(flat[b], dim=0, return_counts=True)
        wrong += int((counts - 1).sum())
    return wrong / max(batch * n, 1)


def tie_limited_kendall_tau(test_images, grid, fit, seed):
    """The mean Kendall tau of a solver that is right up to swaps of identical pieces.

    Pieces of one digit that are equal pixel for pixel (blank background, mostly) can be
    swapped without changing the picture, so no solver can know which of them goes where. This
    places each group of identical pieces at random among its true positions (one draw, fixed
    seed) and is otherwise right: an upper bound, in expectation, on the Kendall tau of any
    method on the same test puzzles.
    """
    _, ordered, perm = held_out_puzzles(test_images, grid, fit, seed)
    generator = torch.Generator().manual_seed(seed)
    best = perm.clone()
    flat = ordered.flatten(2)
    for b in range(len(perm)):
        _, group = torch.unique(flat[b], dim=0, return_inverse=True)  # group of each position
        scrambled_group = group[perm[b]]  # the group of scrambled piece i
        for g in scrambled_group.unique():
            pieces = (scrambled_group == g).nonzero().flatten()
            if len(pieces) > 1:
                shuffled = torch.randperm(len(pieces), generator=generator)
                best[b, pieces] = perm[b, pieces[shuffled]]
    return kendall_tau_mean(best, perm).item()
