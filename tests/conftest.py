import pytest
import torch

# Test tensors are tiny: one thread per process is faster, and with pytest -n 2 on a shared 2-core machine
# more threads than cores slows every tiny op down several times over.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random numbers, whatever ran before it (also under pytest-xdist)."""
    torch.manual_seed(0)
