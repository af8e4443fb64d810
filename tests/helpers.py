"""Helpers shared by the test files (tests/ is on sys.path, so ``from helpers import ...``)."""
import torch


def assert_rel_close(got, want, tol, floor=1e-3):
    """For each pair: the same shape, finite, and max |got - want| <= tol * max(max |want|, floor), in float64.

    The error is relative to the largest entry of the reference; the floor covers references that are exactly
    zero (a gate's gradient when the state it decays is zero). floor=None: purely relative, except that an
    all-zero reference is compared absolutely (max |got| <= tol).
    """
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, f"tensor {i}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        assert torch.isfinite(a).all(), f"tensor {i} has inf/NaN"
        err = (a.double() - b.double()).abs().max().item()
        scale = b.double().abs().max().item()
        bound = tol * (max(scale, floor) if floor is not None else scale or 1.0)
        assert err <= bound, f"tensor {i}: error {err:.3g} > {bound:.3g} (largest reference entry {scale:.3g})"


def as_float32(x):
    """Fresh float32 leaves with the values of the dict of tensors ``x``."""
    return {name: t.detach().float().requires_grad_() for name, t in x.items()}


def with_grads(outputs, leaves):
    """[*outputs, d loss / d each leaf] for loss = the sum of each output weighted by fixed random numbers."""
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype)).sum() for t in outputs)
    return [*outputs, *torch.autograd.grad(loss, list(leaves))]


REPEATED_TEXT = "the cat sat on the mat. " * 6


def repeated_text_losses(model_for_vocab, steps: int = 30) -> list[float]:
    """Train ``model_for_vocab(vocab_size)`` (a LanguageModel) with Adam on one sequence of REPEATED_TEXT (143
    next-character targets); return the loss of every step."""
    import torch.nn.functional as F

    vocab = sorted(set(REPEATED_TEXT))
    ids = torch.tensor([vocab.index(c) for c in REPEATED_TEXT])
    inputs, targets = ids[None, :-1], ids[None, 1:]  # (1, 143)
    torch.manual_seed(0)
    model = model_for_vocab(len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
