"""The C. elegans loader: counts, a symmetric binary adjacency without self-loops, positions in
[0, 1], the cache, clear errors for missing or damaged files, and the derived subset."""

import numpy as np
import pytest

pytest.importorskip("xlrd")
from tutorials.celegans import data as D  # noqa: E402


@pytest.fixture(scope="module")
def connectome(tmp_path_factory):
    return D.load_connectome(cache_dir=tmp_path_factory.mktemp("cache"))


def test_counts_and_sources(connectome):
    # 302 neurons - 20 pharyngeal - CANL, CANR, VC6 (no synapses in Varshney et al.) = 279.
    assert connectome.n == 279
    assert connectome.n_edges == 2287
    assert set(connectome.sources) == {"cect", "c302"}
    for absent in ("CANL", "CANR", "VC6", "I1L", "M1", "MCL"):
        assert absent not in connectome.names
    for present in ("AVAL", "AVAR", "PVCL", "VB1", "AS11", "AVFL"):
        assert present in connectome.names
    assert list(connectome.names) == sorted(connectome.names)


def test_adjacency_symmetric_binary_no_self_loops(connectome):
    a = connectome.adjacency
    assert a.dtype == np.bool_ and a.shape == (279, 279)
    assert (a == a.T).all()
    assert not a.diagonal().any()
    assert a.any(1).all()  # every neuron has a connection


def test_known_edges(connectome):
    idx = {n: i for i, n in enumerate(connectome.names)}
    a = connectome.adjacency
    # From NeuronConnect.xls: ADAR-ADAL gap junction, ADAL sends to AIBL.
    assert a[idx["ADAL"], idx["ADAR"]] and a[idx["ADAL"], idx["AIBL"]]
    assert not a[idx["ADAL"], idx["PVCL"]]


def test_positions_head_to_tail(connectome):
    p = dict(zip(connectome.names, connectome.positions))
    assert connectome.positions.min() == 0 and connectome.positions.max() == 1
    assert ((connectome.positions >= 0) & (connectome.positions <= 1)).all()
    # Head ring neurons lie in front of the mid-body, which lies in front of the tail.
    assert p["AVAL"] < 0.1 and p["ADAL"] < 0.1
    assert 0.3 < p["VC3"] < 0.7
    assert p["PVCL"] > 0.9 and p["DA9"] > 0.9
    # Along the ventral cord the motor neurons run in order.
    assert p["VB1"] < p["VB5"] < p["VB11"]


def test_cache_is_reused_and_matches_sources(tmp_path):
    first = D.load_connectome(cache_dir=tmp_path)
    (cache,) = tmp_path.glob("connectome-*.npz")
    second = D.load_connectome(cache_dir=tmp_path)
    assert second.names == first.names
    assert (second.adjacency == first.adjacency).all()
    assert np.array_equal(second.positions, first.positions)
    assert cache.exists()


def test_damaged_cache_is_refused_then_rebuilt(tmp_path):
    D.load_connectome(cache_dir=tmp_path)
    (cache,) = tmp_path.glob("connectome-*.npz")
    cache.write_bytes(b"not an npz file")
    with pytest.raises(D.ConnectomeDataError, match="refresh=True"):
        D.load_connectome(cache_dir=tmp_path)
    assert D.load_connectome(cache_dir=tmp_path, refresh=True).n == 279


def test_missing_and_damaged_source_files(tmp_path):
    with pytest.raises(D.ConnectomeDataError, match="missing"):
        D.read_varshney_edges(tmp_path / "NeuronConnect.xls")
    bad = tmp_path / "NeuronConnect.xls"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(D.ConnectomeDataError, match="not a readable spreadsheet"):
        D.read_varshney_edges(bad)
    with pytest.raises(D.ConnectomeDataError, match="missing"):
        D.read_soma_y(tmp_path / "AVAL.cell.nml")
    nml = tmp_path / "AVAL.cell.nml"
    nml.write_text("<neuroml><cell")
    with pytest.raises(D.ConnectomeDataError, match="not valid NeuroML"):
        D.read_soma_y(nml)


def test_missing_package(monkeypatch):
    monkeypatch.setattr(D.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(D.ConnectomeDataError, match="not installed"):
        D.parse_sources()


def test_name_normalisation():
    assert D.normalise_name("DD01") == "DD1"
    assert D.normalise_name("VB10") == "VB10"
    assert D.normalise_name("avfr") == "AVFR"
    assert D.normalise_name("IL2VL") == "IL2VL"


@pytest.mark.parametrize("n", [1, 20, 50])
def test_subset_is_connected_induced_and_dense(connectome, n):
    from scipy.sparse.csgraph import connected_components

    sub = connectome.subset(n)
    assert sub.n == n
    idx = [connectome.names.index(name) for name in sub.names]
    assert (sub.adjacency == connectome.adjacency[np.ix_(idx, idx)]).all()
    assert np.array_equal(sub.positions, connectome.positions[idx])
    assert connected_components(sub.adjacency)[0] == 1
    if n == 20:  # grown by links into the set: far denser than the whole (mean degree 16/279)
        assert sub.adjacency.sum(1).mean() > 8


def test_subset_rejects_bad_sizes(connectome):
    with pytest.raises(ValueError, match="between 1 and 279"):
        connectome.subset(0)
    with pytest.raises(ValueError, match="between 1 and 279"):
        connectome.subset(280)
