"""The C. elegans connectome and soma positions, read from two PyPI packages.

Sources (installed by the ``tutorials`` extra, versions pinned in ``pyproject.toml``):

- **Connectivity**: ``NeuronConnect.xls`` of Varshney, Chen, Paniagua, Hall, Chklovskii (2011),
  as shipped in the data folder of ``cect`` (the C. elegans Connectome Toolbox). One row per
  (neuron 1, neuron 2, type, number of contacts); types ``S``/``Sp`` (neuron 1 sends a
  chemical synapse, monadic / polyadic), ``R``/``Rp`` (receives), ``EJ`` (gap junction) and
  ``NMJ`` (neuromuscular junction). It covers the hermaphrodite's somatic nervous system: the
  20 pharyngeal neurons are not in it.
- **Positions**: the soma coordinates in ``c302``'s NeuroML2 cell files (``NeuroML2/<NAME>.
  cell.nml``, the OpenWorm model's morphologies). The body's long axis is ``y`` (about -270
  at the nose and +420 at the tail, in micrometres); a neuron's 1-D position is the centre of
  its soma segments' ``y`` coordinates, mapped linearly to ``[0, 1]`` by the smallest and
  largest soma ``y`` among the neurons kept (0 = the most anterior soma, 1 = the most
  posterior).

The adjacency ``A`` is binary and undirected: ``A[i, j] = A[j, i] = 1`` when the file lists any
chemical synapse (``S``, ``Sp``, ``R``, ``Rp``) or gap junction (``EJ``) between the two neurons
in either direction, with at least one contact. Neurons are the ones that have at least one such
connection (so the three somatic neurons Varshney et al. found no synapses for, CANL, CANR and
VC6, are not in it); names are normalised to WormAtlas's (``VB01`` -> ``VB1``, ``avfl`` ->
``AVFL``). This gives 279 neurons, one more than the 278 of [BP] section 6, which does not say
which neuron it left out.

The parsed arrays are cached in a ``.npz`` file keyed by the two package versions and the
loader's format, so later loads read no spreadsheet or XML. A source file that is missing or
does not parse, and a cache file that does not load, raise :class:`ConnectomeDataError` with
what to do.
"""

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Bump when the parsed arrays change meaning; old caches are then rebuilt.
FORMAT = 1
CHEMICAL_TYPES = ("S", "Sp", "R", "Rp")
GAP_JUNCTION = "EJ"
_NEUROML_NS = "{http://www.neuroml.org/schema/neuroml2}"
_INSTALL = 'pip install -e ".[tutorials]"'


class ConnectomeDataError(ValueError):
    """A source file of the connectome is missing or damaged, or the cache does not load."""


@dataclass(frozen=True)
class Connectome:
    """Neurons, their binary undirected adjacency and their positions along the body.

    :ivar tuple names: ``N`` neuron names (WormAtlas spelling), in sorted order.
    :ivar numpy.ndarray adjacency: ``(N, N)`` bool, symmetric, zero diagonal.
    :ivar numpy.ndarray positions: ``(N,)`` float64 in ``[0, 1]``, 0 = head, 1 = tail.
    :ivar dict sources: the package versions the arrays were read from.
    """

    names: tuple
    adjacency: np.ndarray
    positions: np.ndarray
    sources: dict

    @property
    def n(self):
        return len(self.names)

    @property
    def n_edges(self):
        """Undirected edges (pairs ``i < j`` with ``A[i, j] = 1``)."""
        return int(np.triu(self.adjacency, 1).sum())

    def subset(self, n, start=None):
        """A connected, densely wired sub-connectome of ``n`` neurons, grown from ``start``
        (default: the neuron of highest degree): each step adds the neuron with the most
        connections into the neurons chosen so far (ties: higher degree, then name). Positions
        are unchanged (not rescaled); neurons stay in name order.

        >>> import numpy as np
        >>> a = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=bool)
        >>> c = Connectome(("A", "B", "C"), a, np.array([0.0, 0.5, 1.0]), {})
        >>> c.subset(2).names
        ('A', 'B')
        """
        if not 1 <= n <= self.n:
            raise ValueError(f"n must be between 1 and {self.n}, got {n!r}")
        adjacency = self.adjacency.astype(np.int64)
        degree = adjacency.sum(1)
        if start is None:
            start = int(np.argmax(degree))
        elif isinstance(start, str):
            start = self.names.index(start)
        chosen = np.zeros(self.n, dtype=bool)
        chosen[start] = True
        links = adjacency[start].copy()
        for _ in range(n - 1):
            # lexsort: last key first; smallest index wins ties, i.e. the first name.
            score = np.where(chosen, -1, links)
            best = np.lexsort((np.arange(self.n), -degree, -score))[0]
            if score[best] <= 0:
                raise ValueError(f"the component of {self.names[start]} has fewer than {n} neurons")
            chosen[best] = True
            links += adjacency[best]
        keep = np.flatnonzero(chosen)
        return Connectome(
            tuple(self.names[i] for i in keep),
            self.adjacency[np.ix_(keep, keep)],
            self.positions[keep],
            dict(self.sources),
        )


def normalise_name(name):
    """WormAtlas's spelling of a neuron name: upper case, no zero padding (``VB01`` -> ``VB1``).

    >>> normalise_name("VB01"), normalise_name(" avfl "), normalise_name("IL1DL")
    ('VB1', 'AVFL', 'IL1DL')
    """
    name = name.strip().upper()
    return re.sub(r"^([A-Z]+)0+(\d+)$", r"\1\2", name)


def _package_dir(package):
    """The installed folder of ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConnectomeDataError(
            f"the package {package!r} is not installed; it ships the C. elegans data: {_INSTALL}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def source_versions():
    """``{"cect": version, "c302": version}`` of the installed packages."""
    out = {}
    for package in ("cect", "c302"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError as e:
            raise ConnectomeDataError(
                f"the package {package!r} is not installed; it ships the C. elegans data: "
                f"{_INSTALL}"
            ) from e
    return out


def _missing(path, package):
    return ConnectomeDataError(
        f"{path} is missing: the installed {package!r} does not ship it (another version, or a "
        f"damaged install); reinstall the pinned version: {_INSTALL}"
    )


def read_varshney_edges(path):
    """Undirected connections of ``NeuronConnect.xls``: a set of name pairs ``(a, b)``, ``a <
    b``, with a chemical synapse or gap junction (self-connections dropped, NMJ rows skipped)."""
    import xlrd

    path = Path(path)
    if not path.is_file():
        raise _missing(path, "cect")
    try:
        sheet = xlrd.open_workbook(path).sheet_by_index(0)
        header = [str(v).strip() for v in sheet.row_values(0)]
        rows = [sheet.row_values(r) for r in range(1, sheet.nrows)]
    except Exception as e:  # xlrd raises its own error types, and struct/zlib ones
        raise ConnectomeDataError(
            f"{path} is not a readable spreadsheet ({type(e).__name__}: {e}); reinstall the "
            f"pinned cect: {_INSTALL}"
        ) from e
    if header[:4] != ["Neuron 1", "Neuron 2", "Type", "Nbr"]:
        raise ConnectomeDataError(
            f"{path}: expected the columns Neuron 1, Neuron 2, Type, Nbr, found {header!r}"
        )
    edges = set()
    kinds = set(CHEMICAL_TYPES) | {GAP_JUNCTION, "NMJ"}
    for i, (a, b, kind, count, *_) in enumerate(rows, start=2):
        kind = str(kind).strip()
        if kind not in kinds:
            raise ConnectomeDataError(f"{path}, row {i}: unknown connection type {kind!r}")
        if kind == "NMJ" or not float(count) > 0:
            continue
        a, b = normalise_name(str(a)), normalise_name(str(b))
        if a != b:
            edges.add((min(a, b), max(a, b)))
    if not edges:
        raise ConnectomeDataError(f"{path} lists no neuron-to-neuron connection")
    return edges


def read_soma_y(path):
    """Centre of the soma segments' ``y`` coordinates in a NeuroML2 cell file (micrometres)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise _missing(path, "c302") from None
    except ET.ParseError as e:
        raise ConnectomeDataError(
            f"{path} is not valid NeuroML ({e}); reinstall the pinned c302: {_INSTALL}"
        ) from e
    cell = root.find(f"{_NEUROML_NS}cell")
    morph = None if cell is None else cell.find(f"{_NEUROML_NS}morphology")
    if morph is None:
        raise ConnectomeDataError(f"{path} has no cell morphology")
    groups = {g.get("id"): g for g in morph.findall(f"{_NEUROML_NS}segmentGroup")}

    def members(group_id, depth=0):
        group = groups.get(group_id)
        if group is None or depth > 10:
            return set()
        ids = {m.get("segment") for m in group.findall(f"{_NEUROML_NS}member")}
        for inc in group.findall(f"{_NEUROML_NS}include"):
            ids |= members(inc.get("segmentGroup"), depth + 1)
        return ids

    soma_ids = members("soma_group")
    ys = []
    for seg in morph.findall(f"{_NEUROML_NS}segment"):
        if seg.get("id") in soma_ids:
            for end in ("proximal", "distal"):
                point = seg.find(f"{_NEUROML_NS}{end}")
                if point is not None:
                    ys.append(float(point.get("y")))
    if not ys:
        raise ConnectomeDataError(f"{path} has no soma segment with coordinates")
    return float(np.mean(ys))


def parse_sources():
    """Read the two packages' files into ``(names, adjacency, positions)`` (no cache)."""
    edges = read_varshney_edges(_package_dir("cect") / "data" / "NeuronConnect.xls")
    names = tuple(sorted({name for edge in edges for name in edge}))
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    adjacency = np.zeros((n, n), dtype=bool)
    for a, b in edges:
        adjacency[index[a], index[b]] = adjacency[index[b], index[a]] = True
    cells = _package_dir("c302") / "NeuroML2"
    y = np.array([read_soma_y(cells / f"{name}.cell.nml") for name in names])
    positions = (y - y.min()) / (y.max() - y.min())
    return names, adjacency, positions


def default_cache_dir():
    """``$PYRO_PERMUTATIONS_CACHE/celegans``, else ``~/.cache/pyro-permutations/celegans``."""
    root = os.environ.get("PYRO_PERMUTATIONS_CACHE")
    root = Path(root) if root else Path.home() / ".cache" / "pyro-permutations"
    return root / "celegans"


def _cache_path(cache_dir, versions):
    key = hashlib.sha256(repr((FORMAT, sorted(versions.items()))).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"connectome-{key}.npz"


def load_connectome(cache_dir=None, refresh=False):
    """The hermaphrodite somatic connectome (Varshney et al. 2011) with soma positions.

    :param cache_dir: folder of the parsed-array cache (default :func:`default_cache_dir`);
        ``False`` reads the sources and writes no cache.
    :param bool refresh: reparse the sources and overwrite the cache.
    :returns: a :class:`Connectome`.
    :raises ConnectomeDataError: if a package or file is missing, a file does not parse, or
        the cache file is damaged (delete it or pass ``refresh=True``).
    """
    versions = source_versions()
    if cache_dir is False:
        names, adjacency, positions = parse_sources()
        return Connectome(names, adjacency, positions, versions)
    path = _cache_path(default_cache_dir() if cache_dir is None else cache_dir, versions)
    if path.exists() and not refresh:
        try:
            with np.load(path, allow_pickle=False) as f:
                names = tuple(str(s) for s in f["names"])
                adjacency, positions = f["adjacency"].astype(bool), f["positions"]
                stored = dict(zip(f["source_names"].tolist(), f["source_versions"].tolist()))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ConnectomeDataError(
                f"{path} is not a readable connectome cache ({type(e).__name__}: {e}); delete "
                f"it or load with refresh=True to rebuild it from the packages"
            ) from e
        n = len(names)
        if stored != versions or adjacency.shape != (n, n) or positions.shape != (n,):
            raise ConnectomeDataError(
                f"{path} does not hold a connectome of the installed packages {versions}; "
                f"delete it or load with refresh=True"
            )
        return Connectome(names, adjacency, positions, versions)
    names, adjacency, positions = parse_sources()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        names=np.array(names),
        adjacency=adjacency,
        positions=positions,
        source_names=np.array(list(versions)),
        source_versions=np.array(list(versions.values())),
    )
    os.replace(tmp, path)
    return Connectome(names, adjacency, positions, versions)
