import pytest
import torch


@pytest.fixture
def one_thread():
    """torch on one thread for the test: on two shared cores, threads make small matrices far
    slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
