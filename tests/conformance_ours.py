"""Conformance settings of the methods written in this project (see tests/conformance_specs.py).

Each trainable count is a formula over the tiny sizes (h hidden, I intermediate, L layers),
written from the method's definition, never read back from a model.
"""
from __future__ import annotations

from tests.conformance_specs import Spec
from tests.tiny import Dims

HEAD = r"^classifier\."


def _bitfit(d: Dims, rank) -> int:
    # BERT biases: embeddings LayerNorm (h); per layer q,k,v,o (4h), intermediate (I), output (h), 2 LayerNorms (2h); the pooler (bias and weight) is part of the head
    return d.hidden + d.layers * (7 * d.hidden + d.intermediate) + d.head  # the pooler bias is in the head


def _bottleneck(d: Dims, r: int) -> int:
    """down (h x r + r) and up (r x h + h) of one adapter on an h-wide sublayer output."""
    return 2 * d.hidden * r + r + d.hidden


def _houlsby(d: Dims, r: int) -> int:
    # two adapters per block; on the encoder (BERT) also its two LayerNorms (weight + bias) per block
    norms = d.layers * 2 * 2 * d.hidden if d.encoder else 0
    return d.layers * 2 * _bottleneck(d, r) + norms + d.head


def _piggyback(d: Dims, rank) -> int:
    # one score per weight of every linear in the blocks: q,k,v,o (4 h^2), then BERT's FFN in/out (2 hI), Llama's gate/up/down (3 hI)
    ffn = (2 if d.encoder else 3) * d.hidden * d.intermediate
    return d.layers * (4 * d.hidden ** 2 + ffn) + d.head


def _spottune(d: Dims, rank) -> int:
    h, i = d.hidden, d.intermediate
    if d.encoder:  # BERT block: q,k,v,o with biases, 2 LayerNorms, FFN in/out with biases
        block = 4 * (h * h + h) + 2 * 2 * h + (h * i + i) + (i * h + h)
    else:  # Llama block: q,k,v,o, gate/up/down, 2 RMSNorms, no biases
        block = 4 * h * h + 3 * h * i + 2 * h
    policy = h * 2 * d.layers + 2 * d.layers  # linear h -> 2 logits per block
    return d.layers * block + policy + d.head


SPECS: dict[str, Spec] = {
    "head_only": Spec(trainable=lambda d, r: d.head, changes=HEAD, starts_at_base=True),
    "bitfit": Spec(trainable=_bitfit, changes=r"\.bias$|" + HEAD, starts_at_base=True),
    "adapter_houlsby": Spec(trainable=_houlsby, changes=r"\.adapter\.|layer\.\d+\..*LayerNorm\.|" + HEAD,
                            starts_at_base=True, rank=4),
    "adapter_pfeiffer": Spec(trainable=lambda d, r: d.layers * _bottleneck(d, r) + d.head,
                             changes=r"\.adapter\.|" + HEAD, starts_at_base=True, rank=4),
    "piggyback": Spec(trainable=_piggyback, changes=r"\.scores$|" + HEAD, starts_at_base=True),
    "spottune": Spec(trainable=_spottune, changes=r"\.tuned\.|^spottune_policy\.|" + HEAD, starts_at_base=True),
}
