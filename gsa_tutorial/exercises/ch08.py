"""Checkers of chapter 8 (training on rotated MNIST).

* :func:`check_accuracy_vs_angle`: the reader writes the evaluation behind the
  accuracy-against-angle curve (equation ``ch8-acc``); checked against :func:`gsa_tutorial.train.accuracy_vs_angle`
  on a tiny batch and a classifier that is sensitive to the direction of rotation.
* :func:`check_selection_bias`: the reader estimates how optimistic it is to report the best of
  several test accuracies; checked against the exact expectation of the maximum of binomials.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._core import Check, checker

__all__ = ["check_accuracy_vs_angle", "check_selection_bias", "expected_selection_bias"]

_ANGLES = (0.0, math.pi / 6, math.pi / 2, 5 * math.pi / 4)  # 0°, 30°, 90°, 225°


def _probe() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A fixed linear classifier, 40 random 12x12 images, and labels it gets right at +30° only."""
    from ..data import rotate_images  # imported here: the exercises stay light to import

    gen = torch.Generator().manual_seed(8)
    linear = nn.Linear(144, 10)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(10, 144, generator=gen))
        linear.bias.zero_()
    model = nn.Sequential(nn.Flatten(), linear)
    images = torch.rand(40, 1, 12, 12, generator=gen)
    with torch.no_grad():
        labels = model(rotate_images(images, math.pi / 6)).argmax(dim=1)  # correct exactly when rotated by +30°
    return model.eval(), images, labels


@checker(
    "accuracy against the rotation angle (chapter 8)",
    hint="for every angle: rotate all images with gsa_tutorial.data.rotate_images(images, angle) (radians, "
    "counter-clockwise), take the model's argmax in eval mode under torch.no_grad(), compare with the labels and "
    "average; return one fraction in [0, 1] per angle, in the order of the angles",
)
def check_accuracy_vs_angle(check: Check, answer: Callable[..., Sequence[float]]) -> None:
    """Check ``answer(model, images, labels, angles)``, the list of accuracies (fractions), one per angle.

    The probe is a fixed linear classifier on 40 random 12x12 images whose labels are its own
    predictions on the images rotated by +30°: an answer that rotates the other way, or not at all,
    gets a visibly lower accuracy at 30°. Compared with
    :func:`~gsa_tutorial.train.accuracy_vs_angle` at 0°, 30°, 90° and 225° (to less than one image of the 40).

    Args:
        answer: the reader's function; ``angles`` is a list of angles in radians.
    """
    from ..data import rotate_images
    from ..train import accuracy_vs_angle

    model, images, labels = _probe()
    expected = accuracy_vs_angle(model, images, labels, list(_ANGLES))["accuracy"]
    got = answer(model, images.clone(), labels.clone(), list(_ANGLES))
    values = [float(v) for v in (got.tolist() if isinstance(got, torch.Tensor) else got)]
    if not check.expect(len(values) == len(_ANGLES), f"one accuracy per angle ({len(_ANGLES)})",
                        f"expected one accuracy per angle ({len(_ANGLES)} angles), got {len(values)} values"):
        return
    tol = 0.5 / len(labels)  # less than one image: float32 means and exact fractions both pass
    if any(v > 1.0 for v in values) and all(abs(v / 100 - e) < tol for v, e in zip(values, expected)):
        check.wrong.append("your accuracies are percentages: return fractions in [0, 1]")
        return
    bad = [(a, v, e) for a, v, e in zip(_ANGLES, values, expected) if abs(v - e) >= tol]
    for angle, v, e in bad:
        check.wrong.append(f"at {math.degrees(angle):.0f}° your accuracy is {v:.4g}, expected {e:.4g} "
                           f"({round(abs(v - e) * len(labels))} of {len(labels)} images judged differently)")
    if bad and any(a == math.pi / 6 for a, _, _ in bad):
        with torch.no_grad():
            clockwise = float((model(rotate_images(images, -math.pi / 6)).argmax(1) == labels).double().mean())
        if abs(values[1] - clockwise) < tol:
            check.wrong.append("your 30° value is the accuracy on images rotated by −30°: rotate counter-clockwise (positive angles)")
    if not bad:
        check.right.append(f"your accuracies equal accuracy_vs_angle at 0°, 30°, 90° and 225° ({', '.join(f'{e:.3f}' for e in expected)})")


def expected_selection_bias(p: float, n: int, epochs: int) -> float:
    """The exact bias, in percentage points, of reporting the best of ``epochs`` test accuracies.

    Each epoch's accuracy is an independent binomial estimate ``Binomial(n, p) / n`` of the same
    true accuracy ``p``; the expected maximum is ``Σ_k k/n · (F(k)^E − F(k−1)^E)`` with ``F`` the
    binomial distribution function. Returns ``100 · (E[max] − p)``.
    """
    k = torch.arange(n + 1, dtype=torch.float64)
    log_pmf = torch.distributions.Binomial(total_count=torch.tensor(float(n), dtype=torch.float64),
                                           probs=torch.tensor(p, dtype=torch.float64)).log_prob(k)
    cdf = log_pmf.exp().cumsum(0).clamp(max=1.0)  # F(k)
    previous = torch.cat([cdf.new_zeros(1), cdf[:-1]])  # F(k - 1)
    expected_max = float((k / n * (cdf**epochs - previous**epochs)).sum())
    return 100 * (expected_max - p)


_BIAS_CASES = ((0.98, 50_000, 50), (0.9, 1_000, 10))


@checker(
    "the bias of selecting on the test set (chapter 8)",
    hint="simulate: draw (trials, epochs) binomial test accuracies (torch.distributions.Binomial(n, p).sample() / n), "
    "take the maximum over the epochs, average over the trials and subtract p; report percentage points (× 100)",
)
def check_selection_bias(check: Check, answer: Callable[[float, int, int], float]) -> None:
    """Check ``answer(p, n, epochs)``, the expected bias of the best of ``epochs`` test accuracies, in percentage points.

    Compared with :func:`expected_selection_bias` (exact) for two settings, to 5 % of the bias
    (a simulation with a few thousand trials is well inside).

    Args:
        answer: the reader's estimate (a simulation or a formula), a float in percentage points.
    """
    torch.manual_seed(0)
    for p, n, epochs in _BIAS_CASES:
        exact = expected_selection_bias(p, n, epochs)
        got = answer(p, n, epochs)
        got = float(got.item() if isinstance(got, torch.Tensor) else got)
        what = f"p = {p}, n = {n:,}, {epochs} epochs"
        if check.expect(abs(got - exact) <= 0.05 * exact,
                        f"for {what} your bias {got:.3f} points is within 5 % of the exact {exact:.3f}",
                        f"for {what} your bias is {got:.4g} percentage points, the exact expectation is {exact:.4f}"):
            continue
        sigma = 100 * math.sqrt(p * (1 - p) / n)
        if exact and abs(100 * got - exact) <= 0.05 * exact:
            check.wrong.append("your answer is a fraction: multiply by 100 for percentage points")
        elif abs(got - sigma) <= 0.05 * sigma:
            check.wrong.append(f"your answer is the standard deviation of one estimate ({sigma:.3f}), not the expected gain of the maximum")
