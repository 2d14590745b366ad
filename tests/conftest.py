"""Shared pytest set-up: no test may leak global torch state into the next one."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _keep_torch_defaults():
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)
