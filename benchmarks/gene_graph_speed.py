"""diffst's gene graph convolution: the dense product against PyG's message passing, side by
side in one run.

``GeneGraph`` (``methods/diffst/graph.py``) propagates ``GCNConv``'s ``X W`` over its complete
gene graph as one product ``P (X W) + b``; the reference is ``GCNConv``'s own message passing
along the graph's edge list (``GCNConv(x, edge_index, edge_weight)``: gathers and scatters over
the G^2 edges). Both on the same parameters and inputs, node features ``(B, G, h w)`` for the
quick preset's her2st shapes (50 genes on a 12 x 12 LR map), at a training batch (``B = 4``,
forward and backward) and a sampling chunk (``B = 64``, forward only), in float32 and under
bfloat16 autocast. Printed: milliseconds per call of each, the ratio (PyG / dense; > 1: the
product is faster), the largest difference of their outputs relative to the largest output
(bfloat16 keeps about 3 significant digits), and peak RSS.

Usage: ``python benchmarks/gene_graph_speed.py [--threads 1] [--repeat 50]``.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable

import torch

GENES, LR = 50, 12


def per_call(fn: Callable[[], torch.Tensor], backward: bool, repeat: int) -> float:
    """Milliseconds per call of ``fn`` (and its backward), after 5 warm-up calls."""
    for i in range(repeat + 5):
        if i == 5:
            start = time.perf_counter()
        out = fn()
        if backward:
            out.float().sum().backward()
    return (time.perf_counter() - start) / repeat * 1e3


def main() -> None:
    from torch_geometric.nn import GCNConv

    from methods.diffst.graph import GeneGraph

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    graph = GeneGraph(GENES, (LR, LR))
    graph.set_adjacency(torch.rand(GENES) + 0.5)
    gcn = GCNConv(LR * LR, LR * LR, normalize=False, add_self_loops=False)
    gcn.load_state_dict(graph.gcn.state_dict())  # the same parameters in PyG's layer
    print(f"{GENES} genes x {LR} x {LR} LR, {args.threads} thread(s), {args.repeat} calls")
    print(f"{'case':34s} {'PyG ms':>8s} {'dense ms':>9s} {'ratio':>6s} {'rel diff':>9s}")
    for rows, backward in ((4, True), (64, False)):
        x = torch.randn(rows, GENES, LR * LR, requires_grad=backward)
        for amp in (False, True):

            def pyg(x: torch.Tensor = x) -> torch.Tensor:
                return gcn(x, graph.edge_index, graph.edge_weight)

            def dense(x: torch.Tensor = x) -> torch.Tensor:
                return graph.propagation() @ graph.gcn.lin(x) + graph.gcn.bias

            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                ms_pyg = per_call(pyg, backward, args.repeat)
                ms_dense = per_call(dense, backward, args.repeat)
                with torch.no_grad():
                    ref = pyg().float()
                    gap = float((ref - dense().float()).abs().max() / ref.abs().max())
            case = f"B={rows} {'fwd+bwd' if backward else 'fwd'} {'bf16' if amp else 'fp32'}"
            print(f"{case:34s} {ms_pyg:8.2f} {ms_dense:9.2f} {ms_pyg / ms_dense:5.1f}x {gap:9.2e}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
