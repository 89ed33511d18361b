"""Co-expression gene graph network on the LR map (contribution 1 of ``diffst``).

Nodes are genes; each node's features are its LR map after a 3x3 conv over all genes (G -> G,
as released) + SiLU, flattened.
One graph convolution over genes gives a small residual: ``lr' = 0.98 lr + 0.02 ReLU(GCN)``.
The adjacency comes from training data only, handed in by the caller.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Adjacency = Literal["ratio", "pearson"]


def ratio_adjacency(totals: Tensor) -> Tensor:
    """The release's adjacency: ``A = max(C, C^T)`` with ``C[i, j] = S_i / S_j``.

    Parameters
    ----------
    totals : Tensor
        ``(G,)`` total expression of each gene over the training HR maps; finite and > 0.

    Returns
    -------
    Tensor
        ``(G, G)`` float32, symmetric, diagonal 1, every entry >= 1 (no threshold, no
        normalisation, as released).
    """
    s = totals.detach().to(torch.float64).flatten()
    if not torch.isfinite(s).all() or (s <= 0).any():
        bad = torch.nonzero(~torch.isfinite(s) | (s <= 0)).flatten().tolist()
        raise ValueError(f"gene totals must be finite and > 0; genes {bad} are not")
    c = s[:, None] / s[None, :]
    return torch.maximum(c, c.T).to(torch.float32)


def pearson_adjacency(pearson: Tensor, threshold: float) -> Tensor:
    """Alternative adjacency: ``|r_ij|`` where ``|r_ij| >= threshold``, else 0; diagonal 1.

    Parameters
    ----------
    pearson : Tensor
        ``(G, G)`` Pearson co-expression matrix computed on training data.
    threshold : float
        Minimum absolute correlation for an edge, in [0, 1].
    """
    if pearson.ndim != 2 or pearson.shape[0] != pearson.shape[1]:
        raise ValueError(f"pearson must be (G, G), got {tuple(pearson.shape)}")
    r = pearson.detach().to(torch.float32).abs()
    r = torch.nan_to_num(r, nan=0.0)  # a constant gene has undefined r: no edge
    a = torch.where(r >= threshold, r, torch.zeros_like(r))
    a = torch.maximum(a, a.T)
    a.fill_diagonal_(1.0)
    return a


class GraphConvolution(nn.Module):
    """The parameters of PyG's ``GCNConv(F, F)``, as it names and initialises them: ``lin.weight``
    ``(F, F)`` Glorot-uniform and ``bias`` ``(F,)`` zero. Holding them without PyG keeps
    ``torch_geometric`` (and its import, seconds a process) out of the model; the parameters,
    their checkpoint keys and every seed's draws stay GCNConv's (tested against it).

    Parameters
    ----------
    features : int
        Node features F in and out.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.lin = nn.utils.skip_init(nn.Linear, features, features, bias=False)
        self.bias = nn.Parameter(torch.zeros(features))
        bound = math.sqrt(6.0 / (2 * features))  # Glorot uniform: sqrt(6 / (fan_in + fan_out))
        with torch.no_grad():
            for _ in range(2):  # GCNConv draws W twice (its Linear, then its own reset)
                self.lin.weight.uniform_(-bound, bound)


class GeneGraph(nn.Module):
    """Graph convolution over genes applied to the LR map.

    Parameters
    ----------
    genes : int
        Number of genes G (graph nodes).
    lr_hw : tuple of int
        LR grid ``(h, w)``; each node has ``h * w`` features.
    adjacency : {"ratio", "pearson"}
        How :meth:`set_adjacency` builds A (default: the release's total-expression ratio).
    threshold : float
        ``|r|`` threshold of the ``"pearson"`` adjacency.
    normalize : bool
        Symmetric GCN normalisation ``D^-1/2 A D^-1/2`` (off in the release).

    Notes
    -----
    The graph is stored over all ``G * G`` ordered pairs (self-loops included via the diagonal)
    as the buffers ``edge_index (2, G*G)`` and ``edge_weight (G*G,)``, PyG's edge list; a pair
    without an edge has weight 0, which contributes nothing to messages or degrees. The fixed
    size keeps checkpoints loadable whatever the adjacency. ``adjacency_ready`` records that A
    was set (also restored from a checkpoint).

    The graph convolution is ``GCNConv``'s (its weight W and bias b, :class:`GraphConvolution`),
    propagated as one dense product over the complete graph (:meth:`propagation`):
    ``relu(P (X W) + b)`` for node features X ``(B, G, F)``. It equals ``GCNConv``'s message
    passing along ``edge_index`` (which gathers and scatters ``B G^2 F`` values where the product
    reads ``G^2``), and is tested against it.
    """

    def __init__(
        self,
        genes: int,
        lr_hw: tuple[int, int],
        adjacency: Adjacency = "ratio",
        threshold: float = 0.0,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if adjacency not in ("ratio", "pearson"):
            raise ValueError(f"adjacency must be 'ratio' or 'pearson', got {adjacency!r}")
        self.genes, self.lr_hw = genes, (int(lr_hw[0]), int(lr_hw[1]))
        self.adjacency, self.threshold, self.normalize = adjacency, threshold, normalize
        features = self.lr_hw[0] * self.lr_hw[1]
        self.conv = nn.Conv2d(genes, genes, 3, padding=1)  # mixes genes, as released
        self.gcn = GraphConvolution(features)
        src, dst = torch.meshgrid(torch.arange(genes), torch.arange(genes), indexing="ij")
        self.register_buffer("edge_index", torch.stack([src.flatten(), dst.flatten()]))
        self.register_buffer("edge_weight", torch.zeros(genes * genes))
        self.register_buffer("adjacency_ready", torch.tensor(False))

    def set_adjacency(
        self, totals: Tensor | None = None, *, pearson: Tensor | None = None
    ) -> None:
        """Build A from training statistics (the caller restricts them to the training split).

        Parameters
        ----------
        totals : Tensor, optional
            ``(G,)`` per-gene total training HR expression; required for ``"ratio"``.
        pearson : Tensor, optional
            ``(G, G)`` training Pearson co-expression; required for ``"pearson"``.
        """
        if self.adjacency == "ratio":
            if totals is None:
                raise ValueError("the 'ratio' adjacency needs per-gene totals (G,)")
            a = ratio_adjacency(totals)
        else:
            if pearson is None:
                raise ValueError("the 'pearson' adjacency needs a (G, G) Pearson matrix")
            a = pearson_adjacency(pearson, self.threshold)
        if a.shape != (self.genes, self.genes):
            raise ValueError(f"adjacency for {self.genes} genes expected, got {tuple(a.shape)}")
        # edge (i -> j) carries A[i, j]; A is symmetric so the direction does not matter.
        self.edge_weight.copy_(a.flatten().to(self.edge_weight))
        self.adjacency_ready.fill_(True)

    def dense_adjacency(self) -> Tensor:
        """``(G, G)`` view of the current edge weights."""
        return self.edge_weight.view(self.genes, self.genes)

    def propagation(self) -> Tensor:
        """``(G, G)`` matrix P with ``out_j = sum_i P[j, i] h_i``: ``A^T``, or with ``normalize``
        ``D^-1/2 A^T D^-1/2`` with ``D_jj = sum_i A[i, j]`` (a node without edges gets 0), as
        ``GCNConv`` propagates edge ``i -> j`` with weight ``A[i, j]``."""
        p = self.dense_adjacency().T
        if not self.normalize:
            return p
        degree = p.sum(dim=1)
        d = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
        return d[:, None] * p * d[None, :]

    def forward(self, lr: Tensor) -> Tensor:
        """``(B, G, h, w)`` LR map -> ``(B, G, h, w)`` graph-refined LR map."""
        if not bool(self.adjacency_ready):
            raise RuntimeError(
                "GeneGraph adjacency is not set: call set_adjacency(totals) with training-split "
                "statistics (or DiffSTNet.set_gene_totals) before the forward pass"
            )
        b, g, h, w = lr.shape
        if (g, (h, w)) != (self.genes, self.lr_hw):
            raise ValueError(
                f"GeneGraph built for {self.genes} genes on {self.lr_hw}, got {g} on {(h, w)}"
            )
        x = F.silu(self.conv(lr)).reshape(b, g, h * w)
        out = F.relu(self.propagation() @ self.gcn.lin(x) + self.gcn.bias)  # (B, G, F)
        return 0.98 * lr + 0.02 * out.reshape(b, g, h, w)
