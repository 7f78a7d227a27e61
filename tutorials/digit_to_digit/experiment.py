"""Turning one MNIST digit into another by permuting its pieces ([GS] Figure 2(b)).

A digit of class ``c`` is cut into a ``g x g`` grid of pieces; the target is the prototype of
class ``(c + shift) mod 10`` (the training digit of that class nearest its class mean). The
Sinkhorn network of the jigsaw tutorial (same per-piece CNN and linear head) scores where each
source piece goes, and training minimises the squared error between the target and the soft
rearrangement ``P^T x`` of the source's pieces, over Gumbel-Sinkhorn samples ``P``. The network
must recognise the source's class from its pieces to know which target to build. At test time
the hard rearrangement ``M(X)^T x`` and the soft one ``S(X)^T x`` (temperature 1) are shown.
"""

import time

import torch
from tqdm.auto import tqdm

from pyro_permutations.nn import (
    image_to_pieces,
    l2_error,
    pieces_to_image,
    reconstruct,
    reconstruction_loss,
)
from pyro_permutations.ops import log_sinkhorn
from tutorials.jigsaw import experiment as jigsaw

#: The training set-up (ours), on top of the jigsaw tutorial's network; one Gumbel-Sinkhorn
#: sample per digit, since the 49 x 49 Sinkhorn sweeps dominate the cost of a step.
REFERENCE = {**jigsaw.REFERENCE, "lr": 3e-3, "batch": 32, "samples": 1}


def prototypes(images, labels):
    """One target digit per class ``(10, 1, 28, 28)``: the image nearest its class mean."""
    out = []
    for c in range(10):
        members = images[labels == c]
        if len(members) == 0:
            raise ValueError(f"the training digits hold no digit of class {c}")
        distance = (members - members.mean(0)).flatten(1).pow(2).sum(-1)
        out.append(members[distance.argmin()])
    return torch.stack(out)


def make_model(config):
    return jigsaw.make_model(config)


def pairs(images, labels, targets, grid, shift):
    """Source pieces ``(B, n, 1, h, h)`` and the pieces of their targets."""
    source = image_to_pieces(images, grid)
    target = image_to_pieces(targets[(labels + shift) % 10], grid)
    return source, target


def train(config, images, labels, targets, device="cpu", progress=True):
    """:returns: ``(model, seconds, final_loss)``."""
    torch.manual_seed(config["seed"])
    model = make_model(config).to(device)
    model.train()
    images, labels, targets = images.to(device), labels.to(device), targets.to(device)
    optim = torch.optim.Adam(model.parameters(), lr=config["lr"])
    bar = tqdm(range(config["steps"]), desc="train digit-to-digit", disable=not progress)
    start = time.perf_counter()
    loss = torch.tensor(float("nan"))
    for step in bar:
        index = torch.randint(len(images), (config["batch"],), device=device)
        source, target = pairs(
            images[index], labels[index], targets, config["grid"], config["shift"]
        )
        loss = reconstruction_loss(target, source, model(source))
        optim.zero_grad()
        loss.backward()
        optim.step()
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.2e}")
    final = loss.item()
    seconds = time.perf_counter() - start
    bar.close()
    return model, seconds, final


@torch.no_grad()
def transform(model, images, temperature=1.0, device="cpu"):
    """The hard and the soft (``S(X / temperature)``) rearrangements of ``images``' pieces,
    as images ``(B, 1, 28, 28)``."""
    model.eval()
    grid = round(model.n**0.5)
    source = image_to_pieces(images.to(device), grid)
    scores = model.scores(source)
    soft = reconstruct(source, log_sinkhorn(scores / temperature).exp())
    hard = reconstruct(source, model(source))
    return pieces_to_image(hard, grid).cpu(), pieces_to_image(soft, grid).cpu()


@torch.no_grad()
def evaluate(model, images, labels, targets, shift, device="cpu"):
    """Per source class: the mean squared pixel error to the target of the source as it is,
    of its hard rearrangement, and of its soft one (temperature 1)."""
    hard, soft = transform(model, images, device=device)
    goal = targets[(labels + shift) % 10]
    rows = []
    for c in range(10):
        mask = labels == c
        if mask.any():
            rows.append(
                {
                    "source": c,
                    "target": (c + shift) % 10,
                    "count": int(mask.sum()),
                    "l2_unchanged": l2_error(images[mask], goal[mask]).item(),
                    "l2_hard": l2_error(hard[mask], goal[mask]).item(),
                    "l2_soft": l2_error(soft[mask], goal[mask]).item(),
                }
            )
    return rows
