"""The geometric translator's matching kernels against brute force."""

import pytest
import torch

from align.geometric.kernels import csls_matches
from align.vectors import unit_rows


def brute_csls(a, b, k):
    s = a @ b.T
    ra, rb = s.topk(k, dim=1).values.mean(1), s.topk(k, dim=0).values.mean(0)
    c = 2 * s - ra[:, None] - rb[None, :]
    return c.argmax(dim=1), c.argmax(dim=0)


@pytest.mark.parametrize("rows_a,rows_b,chunk,candidates", [(300, 500, 64, 8), (500, 300, 4096, 64),
                                                             (40, 30, 16, 64), (257, 129, 100, 2)])
def test_csls_matches_equal_brute_force(rows_a, rows_b, chunk, candidates):
    g = torch.Generator().manual_seed(rows_a)
    # clustered rows with hubs: a few cluster centres shared by many rows
    centres = unit_rows(torch.randn(12, 16, generator=g))
    a = unit_rows(centres[torch.randint(12, (rows_a,), generator=g)] + 0.7 * torch.randn(rows_a, 16, generator=g))
    b = unit_rows(centres[torch.randint(12, (rows_b,), generator=g)] + 0.7 * torch.randn(rows_b, 16, generator=g))
    fwd, back = csls_matches(a, b, 10, chunk=chunk, candidates=candidates)
    want_fwd, want_back = brute_csls(a, b, 10)
    assert torch.equal(fwd, want_fwd)
    assert torch.equal(back, want_back)


def test_topk_rows_equals_torch_topk():
    from align.geometric.kernels import topk_rows
    g = torch.Generator().manual_seed(5)
    a, b = unit_rows(torch.randn(200, 24, generator=g)), unit_rows(torch.randn(300, 24, generator=g))
    vals, idx = topk_rows(a, b.T.contiguous().T, 7)  # a strided view of b: copied for faiss, not misread
    want = (a @ b.T).topk(7, dim=1)
    assert torch.equal(idx, want.indices) and torch.allclose(vals, want.values, atol=1e-6)
    assert topk_rows(a, b[:5], 7)[1].shape == (200, 5)  # k capped at the rows there are
