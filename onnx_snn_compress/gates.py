"""Quality gates: the thresholds a CI job sets on accuracy and resource, and their verdicts.

A gate is a bound a model must meet: ``min_accuracy`` (accuracy on the gated
split, a fraction in [0, 1]), ``max_accuracy_drop`` (the uncompressed model's
accuracy on the same split minus this model's, a fraction in [0, 1]) and
``max_resource`` (the resource per inference, absolute, in the unit of the
resource: synapses, MACs, SynOps or pJ). The command line maps a failed gate to
exit code 1 (docs/ci.md).

With ``select="best-within-gates"`` a compression names the smallest model (least
resource) that passes every gate as ``selected``; the run passes when one does.
Otherwise every budget's model must pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import SNNError

SELECTIONS = ("all", "best-within-gates")
TOLERANCE = 1e-9  # an accuracy exactly at a bound passes, whatever float rounding did to the difference


@dataclass(frozen=True)
class Gates:
    """Bounds a model must meet; ``None`` disables a gate."""

    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    max_resource: float | None = None

    def validate(self) -> None:
        for name in ("min_accuracy", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                option = "--" + name.replace("_", "-")
                raise SNNError(f"{option} {value} is outside [0, 1]: accuracies are fractions (0.95 = 95 %)")
        if self.max_resource is not None and not (math.isfinite(self.max_resource) and self.max_resource >= 0):
            raise SNNError(f"--max-resource {self.max_resource} must be a finite number >= 0 "
                           "(in the unit of --resource: synapses, MACs, SynOps or pJ per inference)")

    @property
    def active(self) -> bool:
        return any(value is not None for value in asdict(self).values())

    def to_json(self) -> dict:
        return asdict(self)

    def failures(self, accuracy: float | None, reference_accuracy: float | None, resource: str,
                 resource_value: float | None) -> list[str]:
        """One sentence per failed gate (empty: the model passes).

        ``accuracy`` and ``reference_accuracy`` (the uncompressed model's) are fractions on
        the gated split; an accuracy gate without an accuracy to check fails, and says why.
        """
        failed = []
        if self.min_accuracy is not None or self.max_accuracy_drop is not None:
            if accuracy is None:
                return ["no accuracy to gate: the data have no validation or test split"]
        if self.min_accuracy is not None and accuracy < self.min_accuracy - TOLERANCE:
            failed.append(f"accuracy {accuracy:.4f} < --min-accuracy {self.min_accuracy:g}")
        if self.max_accuracy_drop is not None:
            if reference_accuracy is None:
                failed.append("no uncompressed accuracy to compare with for --max-accuracy-drop")
            elif reference_accuracy - accuracy > self.max_accuracy_drop + TOLERANCE:
                failed.append(f"accuracy drop {reference_accuracy - accuracy:.4f} (from {reference_accuracy:.4f}) "
                              f"> --max-accuracy-drop {self.max_accuracy_drop:g}")
        if self.max_resource is not None and resource_value is not None and resource_value > self.max_resource:
            failed.append(f"{resource} {resource_value:.6g} > --max-resource {self.max_resource:g}")
        return failed


def check_selection(select: str) -> None:
    if select not in SELECTIONS:
        raise SNNError(f"unknown selection {select!r}; choose one of {', '.join(SELECTIONS)}")


def gated_split(accuracy: dict) -> str | None:
    """The split the gates read: test when measured, else validation."""
    return next((split for split in ("test", "val") if split in accuracy), None)


def apply_to_report(report: dict, gates: Gates, select: str = "all") -> bool:
    """Add each budget's verdict (``gate``), the thresholds (``gates``) and ``selected`` to a
    compression report in place; return whether the run passes.

    ``selected`` is the budget of the least-resource model that passes (``None`` when
    none does, or when ``select`` is ``"all"``).
    """
    check_selection(select)
    split = gated_split(report["input"]["accuracy"])
    reference = report["input"]["accuracy"].get(split) if split else None
    resource = report["resource"]
    for entry in report["budgets"]:
        accuracy = entry["accuracy"].get(split) if split else None
        failed = gates.failures(accuracy, reference, resource, entry["figures"][resource])
        entry["gate"] = {"passed": not failed, "failed": failed}
    passing = [e for e in report["budgets"] if e["gate"]["passed"]]
    selected = None
    if select == "best-within-gates" and passing:
        # least resource; among equals, the most accurate
        best = min(passing, key=lambda e: (e["figures"][resource], -e["accuracy"].get(split or "", 0.0)))
        selected = best["budget"]
    passed = bool(passing) if select == "best-within-gates" else len(passing) == len(report["budgets"])
    report["gates"] = {**gates.to_json(), "split": split, "select": select, "passed": passed}
    report["selected"] = selected
    return passed
