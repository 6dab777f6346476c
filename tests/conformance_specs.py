"""What each registered method promises, checked by tests/test_conformance.py.

`changes` is a regex over parameter names: the only parameters that may change in
training.  `trainable(dims, rank)` is the method's trainable-parameter formula on the
tiny models of tests/tiny.py (2 layers, hidden 32, intermediate 64, 2 labels).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tests.tiny import Dims


@dataclass(frozen=True)
class Spec:
    trainable: Callable[[Dims, int | None], int]
    changes: str
    starts_at_base: bool
    rank: int | None = None  # rank used by the tests (ranked methods)
    ranks: tuple[int, ...] = (1, 2, 4)  # ranks for the count-grows-with-rank check
    settings: dict = field(default_factory=dict)


def _full(d: Dims, rank) -> int:
    from tests import tiny

    model, _ = tiny.base_model(d.task_type)
    return d.total(model)


SPECS: dict[str, Spec] = {
    "full": Spec(trainable=_full, changes=r".", starts_at_base=True),
    # r x (d_in + d_out) per target; targets: query/value (BERT), q_proj/v_proj (Llama), hidden -> hidden
    "lora": Spec(trainable=lambda d, r: d.layers * 2 * r * (d.hidden + d.hidden) + d.head,
                 changes=r"lora_|modules_to_save", starts_at_base=True, rank=4),
}

from tests.conformance_ours import SPECS as _OURS  # noqa: E402  (they import Spec from here)
from tests.conformance_peft import SPECS as _PEFT  # noqa: E402

SPECS |= _PEFT | _OURS
