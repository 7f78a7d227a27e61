"""Turning one MNIST digit into another by permuting its pieces ([GS] Figure 2(b)).

A digit is cut into a ``g x g`` grid of pieces; the target is the prototype of one class (the
training digit of that class nearest its class mean), or, with ``shift``, of class
``(c + shift) mod 10`` for a source of class ``c``. The Sinkhorn network of the jigsaw tutorial
(same per-piece CNN and linear head) scores where each source piece goes, and training
minimises the squared error between the target and the soft rearrangement ``P^T x`` of the
source's pieces, over Gumbel-Sinkhorn samples ``P``. At test time the hard rearrangement
``M(X)^T x`` and the soft one ``S(X)^T x`` (temperature 1) are shown.

A fixed target class is the default because each piece is scored on its own: a 4 x 4 piece
does not show which digit it came from, so a target that depends on the source's class can only
be learnt on average (the network then builds a blur of all the targets).
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


def target_class(labels, target, shift):
    """The target class of each source: ``target`` if given, else ``(label + shift) mod 10``."""
    if target is not None:
        return torch.full_like(labels, target)
    return (labels + shift) % 10


def pairs(images, labels, targets, grid, target=None, shift=1):
    """Source pieces ``(B, n, 1, h, h)`` and the pieces of their targets."""
    source = image_to_pieces(images, grid)
    goal = image_to_pieces(targets[target_class(labels, target, shift)], grid)
    return source, goal


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
        source, goal = pairs(
            images[index], labels[index], targets, config["grid"], config["target"], config["shift"]
        )
        loss = reconstruction_loss(goal, source, model(source))
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
def evaluate(model, images, labels, targets, target=None, shift=1, device="cpu"):
    """Per source class: the mean squared pixel error to the target of the source as it is,
    of its hard rearrangement, and of its soft one (temperature 1)."""
    hard, soft = transform(model, images, device=device)
    goal_class = target_class(labels, target, shift)
    goal = targets[goal_class]
    rows = []
    for c in range(10):
        mask = labels == c
        if mask.any():
            rows.append(
                {
                    "source": c,
                    "target": int(goal_class[mask][0]),
                    "count": int(mask.sum()),
                    "l2_unchanged": l2_error(images[mask], goal[mask]).item(),
                    "l2_hard": l2_error(hard[mask], goal[mask]).item(),
                    "l2_soft": l2_error(soft[mask], goal[mask]).item(),
                }
            )
    return rows
