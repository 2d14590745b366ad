"""Shared pytest set-up: no test may leak global torch state into the next one."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_torch_defaults():
    """Unit tests use tiny tensors: one thread is fastest and does not oversubscribe a 2-core CI
    machine. The default dtype and thread count are restored after every test."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _exercises_lenient(monkeypatch):
    """Checkers report instead of raising unless a test turns strict mode on itself (make test and
    make book set GSA_EXERCISES_STRICT=1 for the notebooks, not for the unit tests)."""
    from gsa_tutorial.exercises import STRICT_ENV

    monkeypatch.delenv(STRICT_ENV, raising=False)
