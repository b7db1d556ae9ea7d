"""One torch thread for the family tests, as the sweep's workers run: the tiny models here lose more
to thread hand-offs than they gain, and the machine is shared."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
