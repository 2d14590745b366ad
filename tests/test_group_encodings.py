"""The group encodings of the group layer (chapter 6): tables, exact equivariance, the orientation probe."""

from __future__ import annotations

import pytest
import torch
from attention_reference import group_reference

from gsa_tutorial import GroupSelfAttention, assert_equivariant, get_group
from gsa_tutorial.model import GSANet, preset
from gsa_tutorial.positional import GROUP_ENCODINGS, group_encoding_size, relative_group_index
from gsa_tutorial.testing import equivariance_error

F64 = torch.float64
INVARIANT = [("relative", "all"), ("gevit", "all"), ("pair", "all"), ("relative", "own")]
GROUPS = ["r4", "m4", "r8", "r12", "r16", "m2", "r3"]


def lifted(group: str, size: int, channels: int = 2, batch: int = 1, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, get_group(group).order, size, size, generator=gen, dtype=F64)


def layer(group: str, encoding: str, query: str = "all", window: int | None = 3, seed: int = 0, **kw) -> GroupSelfAttention:
    torch.manual_seed(seed)
    kw = {"heads": 2, "dim_head": 3, **kw}
    return GroupSelfAttention(2, 3, group=group, window=window, group_encoding=encoding, query=query, **kw).double()


def permuted(table: torch.Tensor, group, r: int) -> torch.Tensor:
    """``table[r h, r t, r s]`` as a table indexed ``[h, t, s]``."""
    move = torch.as_tensor(group.cayley_table)[r]  # move[a] = r a
    return table[move][:, move][:, :, move]


# ---- the tables ----------------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("encoding", ["relative", "gevit", "pair"])
def test_invariant_tables_are_invariant_under_every_left_multiplication(group, encoding):
    g = get_group(group)
    table = relative_group_index(g, encoding)
    assert table.shape == (g.order,) * 3 and table.dtype == torch.long
    assert 0 <= int(table.min()) and int(table.max()) < group_encoding_size(g, encoding)
    for r in g.elements:
        assert torch.equal(permuted(table, g, r), table), f"{encoding} table of {group} changes under {g.element_names[r]}"


@pytest.mark.parametrize("group", ["r4", "m4", "r8", "m2"])
def test_official_table_is_not_invariant(group):
    g = get_group(group)
    table = relative_group_index(g, "official")
    moved = [r for r in g.elements if not torch.equal(permuted(table, g, r), table)]
    assert moved, "the official table should change under some rotation"


@pytest.mark.parametrize("n", [3, 4, 8, 12])
def test_cyclic_tables_in_additive_notation(n):
    h, t, s = torch.meshgrid(*(torch.arange(n),) * 3, indexing="ij")
    group = f"r{n}"
    assert torch.equal(relative_group_index(group, "relative"), (s - t) % n)
    assert torch.equal(relative_group_index(group, "gevit"), (2 * t - s - h) % n)  # Xu et al.'s index
    assert torch.equal(relative_group_index(group, "official"), (t - s - h) % n)  # h·h̃⁻¹ĥ up to naming entries
    assert torch.equal(relative_group_index(group, "pair"), n * ((t - h) % n) + (s - h) % n)


@pytest.mark.parametrize("group", ["r4", "m4", "r8"])
def test_pair_table_labels_the_orbits_of_triples(group):
    """Every orbit of (h, h̃, ĥ) under left multiplication gets its own entry: |H|² of them."""
    g = get_group(group)
    table = relative_group_index(g, "pair")
    assert torch.unique(table).numel() == g.order**2
    orbits = {}
    for h in g.elements:
        for t in g.elements:
            for s in g.elements:
                orbit = min((g.compose(r, h), g.compose(r, t), g.compose(r, s)) for r in g.elements)
                orbits.setdefault(orbit, set()).add(int(table[h, t, s]))
    assert len(orbits) == g.order**2 and all(len(v) == 1 for v in orbits.values())


def test_relative_table_ignores_h_and_gevit_reduces_to_the_pair():
    g = get_group("m4")
    rel = relative_group_index(g, "relative")
    assert all(torch.equal(rel[h], rel[0]) for h in g.elements)
    pair, gevit = relative_group_index(g, "pair"), relative_group_index(g, "gevit")
    # GE-ViT's entry is a function of the pair: equal pairs give equal entries
    for value in torch.unique(pair):
        assert torch.unique(gevit[pair == value]).numel() == 1


def test_unknown_encoding_and_own_query_errors():
    with pytest.raises(ValueError, match="'relative', 'gevit', 'pair', 'official'"):
        relative_group_index("r4", "nope")
    with pytest.raises(ValueError, match="renamed 'relative'"):
        GroupSelfAttention(2, 3, group="r4", group_encoding="equivariant")
    with pytest.raises(ValueError, match="query='own'.*only group_encoding='relative', got 'pair'"):
        GroupSelfAttention(2, 3, group="r4", group_encoding="pair", query="own")
    with pytest.raises(ValueError, match="query must be 'all'"):
        GroupSelfAttention(2, 3, group="r4", query="some")
    assert GROUP_ENCODINGS == ("relative", "gevit", "pair", "official")


# ---- every choice computes its formula -----------------------------------------------------


@pytest.mark.parametrize("encoding,query", INVARIANT + [("official", "all")])
@pytest.mark.parametrize("group,window,size", [("r4", 3, 5), ("m4", 3, 4), ("r4", None, 4)])
@pytest.mark.parametrize("implementation", ["factorized", "dense"])
def test_every_choice_matches_the_loop_reference(encoding, query, group, window, size, implementation):
    lay = layer(group, encoding, query, window, implementation=implementation)
    x = lifted(group, size, batch=2)
    torch.testing.assert_close(lay(x), group_reference(lay, x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("encoding,query", INVARIANT)
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_chunked_path_equals_dense_with_gradients(encoding, query, group, monkeypatch):
    """Per-head recomputation (tiny chunk_elements) and pixel blocks (tiny block sizes of the fused
    attentions) change nothing, gradients included."""
    from gsa_tutorial import _fused

    monkeypatch.setattr(_fused._WindowAttention, "block_numbers", 50)
    monkeypatch.setattr(_fused._GroupWindowAttention, "block_numbers", 500)
    lay = layer(group, encoding, query, 3, heads=3, dim_head=2)
    x = lifted(group, 5, batch=2).requires_grad_()
    results = {}
    for name, impl, chunk in [("dense", "dense", 2**24), ("one pass", "factorized", 2**40), ("chunked", "factorized", 100)]:
        lay.implementation, lay.chunk_elements = impl, chunk
        y = lay(x)
        results[name] = (y, *torch.autograd.grad((y * y.sin()).sum(), [x, lay.group_embedding, lay.to_q.weight]))
    for name in ("one pass", "chunked"):
        for a, b in zip(results[name], results["dense"]):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


# ---- exact equivariance --------------------------------------------------------------------


EXACT_CASES = [  # (group, window, size): C4 and D4 local and global, odd and even; the large groups leaner
    *[(g, w, n) for g in ("r4", "m4") for w, n in ((3, 7), (3, 8), (None, 5), (None, 6))],
    *[(g, w, n) for g in ("r8", "r12", "r16") for w, n in ((3, 7), (3, 6), (None, 5), (None, 4))],
]


@pytest.mark.parametrize("encoding,query", INVARIANT)
@pytest.mark.parametrize("group,window,size", EXACT_CASES)
def test_every_invariant_choice_is_exactly_equivariant(encoding, query, group, window, size):
    small = group in ("r12", "r16")
    lay = layer(group, encoding, query, window, heads=1 if small else 2, dim_head=2 if small else 3)
    errors = assert_equivariant(lay, group, lifted(group, size, channels=2))
    assert set(errors) == set(get_group(group).grid_exact_elements) and max(errors.values()) <= 1e-10


@pytest.mark.parametrize("group", ["r4", "m4", "r8"])
@pytest.mark.parametrize("window", [3, None])
def test_official_table_fails_the_checker(group, window):
    lay = layer(group, "official", window=window)
    with pytest.raises(AssertionError, match="is not .*equivariant"):
        assert_equivariant(lay, group, lifted(group, 6))


@pytest.mark.parametrize("encoding,query", INVARIANT)
@pytest.mark.parametrize("group,size", [("r4", 8), ("m4", 9)])
def test_whole_network_is_exactly_invariant_for_every_choice(encoding, query, group, size):
    torch.manual_seed(0)
    net = GSANet(preset("small", group, channels=8, heads=2, group_encoding=encoding, query=query, input_pool=1, pool_after=())).double().eval()
    x = torch.rand(2, 1, size, size, dtype=F64)
    errors = assert_equivariant(net, group, x, output_kind="invariant")
    assert max(errors.values()) <= 1e-10


# ---- the orientation probe -----------------------------------------------------------------


def orientation_spread(lay: GroupSelfAttention, seed: int = 0) -> float:
    """A lifted input constant in space but varying along the group axis: how much does the
    output at an interior pixel vary along h? (relative to its size)."""
    G = lay.group.order
    gen = torch.Generator().manual_seed(seed)
    profile = torch.randn(1, lay.in_channels, G, 1, 1, generator=gen, dtype=F64)
    x = profile.expand(1, lay.in_channels, G, 7, 7).contiguous()
    with torch.no_grad():
        y = lay(x)[0, :, :, 3, 3]  # (C, G) at the centre pixel
    return float((y - y.mean(1, keepdim=True)).abs().max() / y.abs().max())


@pytest.mark.parametrize("group", ["r4", "m4"])
def test_relative_with_sum_over_queries_is_blind_to_orientation(group):
    assert orientation_spread(layer(group, "relative", "all")) < 1e-12


@pytest.mark.parametrize("encoding,query", [("gevit", "all"), ("pair", "all"), ("relative", "own"), ("official", "all")])
@pytest.mark.parametrize("group", ["r4", "m4"])
def test_other_choices_see_orientation(encoding, query, group):
    assert orientation_spread(layer(group, encoding, query)) > 1e-3


def test_equivariance_error_of_the_official_table_grows_with_the_embedding():
    lay = layer("r4", "official")
    x = lifted("r4", 6)
    errors = []
    for scale in (0.0, 0.1, 1.0):
        with torch.no_grad():
            lay.group_embedding.copy_(scale * layer("r4", "official", seed=1).group_embedding)
        errors.append(max(equivariance_error(lay, "r4", x).values()))
    assert errors[0] < 1e-12 < errors[1] < errors[2]


@pytest.mark.parametrize("encoding,query", INVARIANT + [("official", "all")])
def test_large_logits_stay_exact(encoding, query):
    """Logits in the hundreds, far apart across (k, s): where a softmax shifted by anything but its
    own maximum would underflow or overflow, the fast path still equals the dense reference,
    gradients included."""
    lay = layer("m4", encoding, query, 3, heads=2, dim_head=3)
    with torch.no_grad():
        lay.group_embedding.mul_(60.0)
        lay.to_q.weight.mul_(10.0)
    x = lifted("m4", 5, batch=2).requires_grad_()
    results = {}
    for impl in ("factorized", "dense"):
        lay.implementation = impl
        y = lay(x)
        results[impl] = (y, *torch.autograd.grad((y * y.sin()).sum(), [x, lay.group_embedding, lay.to_q.weight]))
    spread = lay.attention_weights(x).amax().item()
    assert spread > 0.99, "the logits are not large enough for the test to mean anything"
    for a, b in zip(results["factorized"], results["dense"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
