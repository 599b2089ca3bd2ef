"""``TNPKRConfig.describe`` names what distinguishes one architecture from another."""

from __future__ import annotations

import pytest

from botorch_tnpkr.nn import TNPKRConfig


def test_describe_names_backend_size_and_bias_options() -> None:
    plain = TNPKRConfig(num_blocks=1, dim_model=32, dim_ffn=64)
    assert plain.describe() == "Exact (softmax/scan) attention, 1 KRBlock, width 32, FFN 64"
    rich = plain.replace(num_blocks=6, ard_bias=True, fine_basis=1, attention="scan")
    assert rich.describe() == (
        "Exact (softmax/scan) attention, 6 KRBlocks, width 32, FFN 64, ARD kernel bias, "
        "1 fine bias function"
    )


@pytest.mark.parametrize(
    ("attention", "kind"), [("dka", "Deep kernel (linear)"), ("performer", "Performer (linear)")]
)
def test_describe_linear_backends(attention: str, kind: str) -> None:
    config = TNPKRConfig(attention=attention, num_blocks=6, dim_ffn=256)
    assert config.describe() == f"{kind} attention, 6 KRBlocks, width 64, FFN 256"
    # Configs that differ in a described field are told apart.
    assert config.replace(dim_model=128).describe() != config.describe()
