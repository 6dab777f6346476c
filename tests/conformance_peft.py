"""Conformance settings of the methods that the peft library implements (see tests/conformance_specs.py).

Formulas use the tiny models' sizes (tests/tiny.py): 2 layers, hidden 32, intermediate 64,
2 heads (so key/value projections are hidden -> hidden), 2 labels; `d.head` is the new
classifier every method trains for seq_cls (0 for causal LM).
"""
from __future__ import annotations

import math

from tests.conformance_specs import Spec
from tests.tiny import Dims


def _dora(d: Dims, r: int) -> int:
    # per q/v target (hidden -> hidden): LoRA's r·(d_in + d_out) plus one magnitude per output feature
    return d.layers * 2 * (r * (d.hidden + d.hidden) + d.hidden) + d.head


def _adalora(d: Dims, r: int) -> int:
    # per q/v target at initialisation, r0 = ceil(1.5 r): P (d_out x r0), Q (r0 x d_in), Λ (r0);
    # pruning later zeroes Λ entries but keeps every tensor trainable
    r0 = math.ceil(1.5 * r)
    return d.layers * 2 * r0 * (d.hidden + d.hidden + 1) + d.head


def _ia3(d: Dims, r) -> int:
    # per block: key and value output scales (hidden each; 2 heads x 16 = hidden for Llama's
    # k/v too) and the FFN activation scale (intermediate)
    return d.layers * (d.hidden + d.hidden + d.intermediate) + d.head


def _vera(d: Dims, r: int) -> int:
    # per q/v target: λ_d (r) and λ_b (d_out = hidden); the shared random A, B are buffers
    return d.layers * 2 * (r + d.hidden) + d.head


def _loha(d: Dims, r: int) -> int:
    # per q/v target: two rank-r products B·A, each r·(d_in + d_out)
    return d.layers * 2 * 2 * r * (d.hidden + d.hidden) + d.head


def _lokr(d: Dims, r: int) -> int:
    # hidden 32 = 4·8 for both d_out and d_in: W1 is 4 x 4; W2 (8 x 8) is factored into
    # 8 x r and r x 8 while r < 8/2, else kept full
    small, large = 4, 8
    assert small * large == d.hidden
    w2 = r * (large + large) if r < large / 2 else large * large
    return d.layers * 2 * (small * small + w2) + d.head


def _prompt_tuning(d: Dims, n: int) -> int:
    # n virtual-token embeddings of width hidden
    return n * d.hidden + d.head


PREFIX_MLP = 512  # prefix_tuning's default `projection`: the reparametrisation MLP's hidden size


def _prefix_tuning(d: Dims, n: int) -> int:
    # the default reparametrisation: an n x d_kv table (d_kv = 2 heads x 16 = hidden), then
    # Linear d_kv -> P (with bias), tanh, Linear P -> a key and a value vector per layer (with bias)
    kv = d.layers * 2 * d.hidden
    return n * d.hidden + (d.hidden * PREFIX_MLP + PREFIX_MLP) + (PREFIX_MLP * kv + kv) + d.head


SPECS: dict[str, Spec] = {
    "dora": Spec(trainable=_dora, changes=r"lora_|modules_to_save", starts_at_base=True, rank=4),
    "adalora": Spec(trainable=_adalora, changes=r"lora_|modules_to_save", starts_at_base=True, rank=4),
    "ia3": Spec(trainable=_ia3, changes=r"ia3_l|modules_to_save", starts_at_base=True),
    "vera": Spec(trainable=_vera, changes=r"vera_lambda|modules_to_save", starts_at_base=True, rank=16),
    "loha": Spec(trainable=_loha, changes=r"hada_|modules_to_save", starts_at_base=True, rank=4),
    # ranks 1, 2 factor W2; 4 reaches the full-W2 branch
    "lokr": Spec(trainable=_lokr, changes=r"lokr_|modules_to_save", starts_at_base=True, rank=2),
    "prompt_tuning": Spec(trainable=_prompt_tuning, changes=r"prompt_encoder|modules_to_save", starts_at_base=False, rank=4),
    "prefix_tuning": Spec(trainable=_prefix_tuning, changes=r"prompt_encoder|modules_to_save", starts_at_base=False, rank=4),
}
