"""Counts are data: every step reports rows read, kept, and dropped by reason in this one shape.

The CLI's last line and the Dagster metadata are both printed from it. A stage also reports where
its time went (`seconds`, by step); that goes to the Dagster metadata, the saved counts and the
CLI's stderr, never into `summary()`, whose shape is the CLI's contract.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counts:
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)  # step -> seconds, summed over workers (`sftmix.normalize.run`)
    # "<rule>:<what>" -> rows a rule found it in, whatever reason they were dropped for, if any
    # (decontamination: the rows holding a benchmark's prompts, where only one benchmark names the drop)
    matched: Counter = field(default_factory=Counter)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def add(self, other: "Counts") -> "Counts":
        self.read += other.read
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.seconds.update(other.seconds)
        self.matched.update(other.matched)
        return self

    def check(self) -> None:
        """Nothing may be lost silently: every row read is either kept or dropped with a reason."""
        lost = self.read - self.kept - sum(self.dropped.values())
        if lost:
            raise RuntimeError(f"{lost} rows unaccounted for (read={self.read}, kept={self.kept}, dropped={dict(self.dropped)})")

    @classmethod
    def from_saved(cls, data: dict) -> "Counts":
        """The inverse of `saved()`: counts saved as JSON by a stage or a worker."""
        return cls(read=data["read"], kept=data["kept"], dropped=Counter(data["dropped"]),
                   seconds=Counter(data.get("seconds", {})), matched=Counter(data.get("matched", {})))

    def saved(self) -> dict:
        """`summary()`, the seconds by step and what rules matched (when any did), as a stage or a
        worker saves them."""
        saved = {**self.summary(), "seconds": {step: round(s, 3) for step, s in self.seconds.items()}}
        if self.matched:
            saved["matched"] = dict(sorted(self.matched.items()))
        return saved

    def summary(self) -> dict:
        return {"read": self.read, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}
