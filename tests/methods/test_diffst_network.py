"""The ``diffst`` network and its parts: shapes, the gene graph, sharing, ablations, gradients."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GCNConv

from methods.diffst.attention import (
    CellToTissueAttention,
    CrossAttention,
    curriculum_ratio,
    kept_tiles,
)
from methods.diffst.disentangle import Disentangle
from methods.diffst.graph import GeneGraph, GraphConvolution
from methods.diffst.modulation import AdaptiveModulation, ConditionInjection
from methods.diffst.network import DiffSTNet
from methods.diffusion.unet import Encoder, ResBlock, TimeEmbedding, group_norm, timestep_embedding

G, H, LR, C, B, T, P = 5, 24, 12, 32, 2, 16, 8
TOTALS = torch.tensor([1.0, 2.0, 4.0, 0.5, 3.0])


def make_net(**kwargs) -> DiffSTNet:
    options = dict(genes=G, image_channels=3, channels=C, lr_hw=(LR, LR), hr_hw=(H, H), tile_px=P)
    options.update(kwargs)
    torch.manual_seed(0)
    net = DiffSTNet(**options)
    net.set_gene_totals(TOTALS)
    return net


def make_batch(
    seed: int = 1, lr: int = LR, image_channels: int = 3, image_px: int = H
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(B, G, H, H, generator=g),
        t=torch.randint(0, 1000, (B,), generator=g),
        lr=torch.rand(B, G, lr, lr, generator=g),
        image=torch.rand(B, image_channels, image_px, image_px, generator=g),
        tiles=torch.rand(B, T, image_channels, P, P, generator=g),
    )


def randomise_zero_params(net: torch.nn.Module) -> None:
    """Give zero-initialised parameters random values so every path carries signal."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------- unet.py


def test_group_norm_falls_back_to_a_divisor():
    assert group_norm(128, 32).num_groups == 32
    assert group_norm(24, 32).num_groups == 24
    assert group_norm(48, 32).num_groups == 24
    assert group_norm(5, 32).num_groups == 5


def test_time_embedding_shapes():
    t = torch.tensor([0, 10, 999])
    assert timestep_embedding(t, 7).shape == (3, 7)
    emb = TimeEmbedding(128)
    assert emb(t).shape == (3, 512)
    assert [m.out_features for m in emb.mlp if isinstance(m, torch.nn.Linear)] == [512, 512]


@pytest.mark.parametrize(
    ("up", "down", "size"), [(False, False, 12), (True, False, 24), (False, True, 6)]
)
def test_resblock_resampling(up, down, size):
    block = ResBlock(16, 64, out_channels=24, up=up, down=down, groups=32)
    out = block(torch.randn(2, 16, 12, 12), torch.randn(2, 64))
    assert out.shape == (2, 24, size, size)


def test_resblock_starts_as_its_skip():
    block = ResBlock(16, 64)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x, torch.randn(2, 64)), x)


def test_encoder_skips_and_sharing():
    enc = Encoder(G, 16, (1, 2), num_res_blocks=2, emb_dim=64, groups=8)
    skips, deep = enc(torch.randn(2, G, 16, 16), torch.randn(2, 64))
    assert [tuple(s.shape[1:]) for s in skips] == [
        (16, 16, 16),
        (16, 16, 16),
        (16, 16, 16),
        (16, 8, 8),
        (32, 8, 8),
        (32, 8, 8),
    ]
    assert enc.skip_channels == [s.shape[1] for s in skips]
    assert deep is skips[-1]
    img = Encoder(1, 16, (1, 2), num_res_blocks=2, emb_dim=64, groups=8, shared=enc)
    skips, _ = img(torch.randn(2, 1, 16, 16), torch.randn(2, 64))
    assert len(skips) == 6
    assert img.res_blocks[1][0].in_conv.weight is enc.res_blocks[1][0].in_conv.weight
    assert img.input_conv.weight is not enc.input_conv.weight
    assert img.down_blocks[0].in_conv.weight is not enc.down_blocks[0].in_conv.weight


# ---------------------------------------------------------------------------- graph.py


def test_ratio_adjacency():
    graph = GeneGraph(G, (LR, LR))
    graph.set_adjacency(TOTALS)
    a = graph.dense_adjacency()
    expected = torch.maximum(TOTALS[:, None] / TOTALS[None], TOTALS[None] / TOTALS[:, None])
    assert torch.allclose(a, expected)
    assert torch.equal(a, a.T)
    assert torch.equal(torch.diagonal(a), torch.ones(G))
    assert graph.edge_index.shape == (2, G * G)


def test_pearson_adjacency_and_normalisation_options():
    r = torch.tensor([[1.0, 0.8, -0.2], [0.8, 1.0, -0.6], [-0.2, -0.6, 1.0]])
    graph = GeneGraph(3, (4, 4), adjacency="pearson", threshold=0.5, normalize=True)
    with pytest.raises(ValueError, match="Pearson"):
        graph.set_adjacency(TOTALS[:3])
    graph.set_adjacency(pearson=r)
    expected = torch.tensor([[1.0, 0.8, 0.0], [0.8, 1.0, 0.6], [0.0, 0.6, 1.0]])
    assert torch.allclose(graph.dense_adjacency(), expected)
    assert graph(torch.rand(2, 3, 4, 4)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("normalize", [False, True])
def test_gene_graph_dense_product_equals_gcnconv_message_passing(normalize):
    graph = GeneGraph(3, (4, 4), adjacency="pearson", threshold=0.5, normalize=normalize)
    # gene 2 has no edge but its self-loop; the normalised product must not divide by zero
    graph.set_adjacency(pearson=torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]]))
    graph.edge_weight.view(3, 3)[2, 2] = 0.0
    with torch.no_grad():
        graph.gcn.bias.normal_()
    x = torch.randn(2, 3, 16)
    gcn = GCNConv(16, 16, normalize=normalize, add_self_loops=False)
    gcn.load_state_dict(graph.gcn.state_dict())  # GraphConvolution holds GCNConv's parameters
    passed = gcn(x, graph.edge_index, graph.edge_weight)  # PyG's gather and scatter
    dense = graph.propagation() @ graph.gcn.lin(x) + graph.gcn.bias
    torch.testing.assert_close(dense, passed)
    assert not torch.allclose(dense[:, 0], dense[:, 1])  # the genes' rows do differ


def test_graph_convolution_is_gcnconv_as_pyg_builds_it():
    """Same parameter names, shapes and draws as GCNConv at one seed, and the same draws after
    it: a network holding it is the network the release's PyG layer gave, seed for seed."""
    torch.manual_seed(7)
    ours, after_ours = GraphConvolution(20).state_dict(), torch.rand(3)
    torch.manual_seed(7)
    theirs, after_theirs = GCNConv(20, 20).state_dict(), torch.rand(3)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(after_ours, after_theirs)
    assert ours["lin.weight"].std() > 0


def test_gene_graph_shapes_and_bad_totals():
    graph = GeneGraph(G, (LR, LR))
    lr = torch.rand(B, G, LR, LR)
    with pytest.raises(RuntimeError, match="set_adjacency"):
        graph(lr)
    with pytest.raises(ValueError, match="genes"):
        graph.set_adjacency(torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0]))
    graph.set_adjacency(TOTALS)
    out = graph(lr)
    assert out.shape == lr.shape
    assert torch.all(out >= 0.98 * lr - 1e-6)  # the GCN residual is ReLU'd, hence >= 0
    with pytest.raises(ValueError, match="built for"):
        graph(torch.rand(B, G, LR + 1, LR + 1))
    # The adjacency and its readiness travel with the state dict.
    fresh = GeneGraph(G, (LR, LR))
    fresh.load_state_dict(graph.state_dict())
    assert torch.equal(fresh(lr), out)


# ---------------------------------------------------------------------------- attention.py


def test_curriculum_boundaries():
    steps = {0: 0.25, 24: 0.25, 25: 0.5, 49: 0.5, 50: 1.0, 999: 1.0}
    assert {s: curriculum_ratio(s, 1000) for s in steps} == steps
    assert kept_tiles(0.25, 256) == 64
    assert kept_tiles(0.1, 30) == 3
    assert kept_tiles(0.01, 16) == 1
    with pytest.raises(ValueError):
        kept_tiles(0.0, 16)


def test_cross_attention_shape():
    attn = CrossAttention(8, 12, 16)
    assert attn(torch.randn(2, 5, 8), torch.randn(2, 7, 12)).shape == (2, 5, 16)


@pytest.mark.parametrize("image_channels", [3, 1])
def test_cell_attention_keeps_the_first_tiles(image_channels):
    torch.manual_seed(0)
    attn = CellToTissueAttention(C, image_channels, P)
    tissue = torch.randn(B, C, 6, 6)
    tiles = torch.rand(B, T, image_channels, P, P)
    changed = tiles.clone()
    changed[:, T // 4 :] = torch.rand_like(changed[:, T // 4 :])
    out = attn(tissue, tiles, 0.25)
    assert out.shape == tissue.shape
    assert torch.equal(out, attn(tissue, changed, 0.25))
    assert not torch.allclose(attn(tissue, tiles, 1.0), attn(tissue, changed, 1.0))
    changed[:, T // 4 - 1] += 1.0  # the last kept tile does matter at 0.25
    assert not torch.allclose(out, attn(tissue, changed, 0.25))


# ---------------------------------------------------------------- disentangle.py, modulation.py


def test_disentangle():
    torch.manual_seed(0)
    dis = Disentangle(C)
    img, lr = torch.randn(B, C, 6, 6), torch.randn(B, C, 6, 6)
    common, d_img, d_lr, loss = dis(img, lr)
    assert common.shape == d_img.shape == d_lr.shape == (B, C // 2, 6, 6)
    c_img, c_lr = dis.common(img), dis.common(lr)
    assert torch.allclose(common, (c_img + c_lr) / 2)
    expected = ((c_img - c_lr) ** 2).mean() / (((d_img - d_lr) ** 2).mean() + 1e-8)
    assert loss.ndim == 0 and torch.allclose(loss, expected)


def test_adaptive_modulation_reweights_own_positions_within_parts():
    torch.manual_seed(0)
    mod = AdaptiveModulation(C // 2, (6, 6))
    # Linear(P, P) twice, P = 3 x 3 positions per part: 2 (P^2 + P) parameters
    assert n_params(mod) == 2 * (9 * 9 + 9)
    d_img, d_lr = torch.randn(B, C // 2, 6, 6), torch.randn(B, C // 2, 6, 6)
    out_img, out_lr = mod(d_img, d_lr)
    assert out_img.shape == out_lr.shape == d_img.shape
    # With a zero Linear the softmax is uniform: every lr position receives the mean of its
    # own part's lr positions (not the other modality's).
    with torch.no_grad():
        mod.weight_lr.weight.zero_()
        mod.weight_lr.bias.zero_()
    _, out_lr = mod(d_img, d_lr)
    part = d_lr[..., 3:, :3]
    expected = 0.9 * part + 0.1 * part.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(out_lr[..., 3:, :3], expected, atol=1e-6)
    # the other part's positions never enter
    changed = d_lr.clone()
    changed[..., :3, :3] += 5.0
    with torch.no_grad():
        mod.weight_lr.weight.normal_()
    a = mod(d_img, d_lr)[1][..., 3:, 3:]
    b = mod(d_img, changed)[1][..., 3:, 3:]
    assert torch.allclose(a, b)
    # an odd grid (the Visium embryo's 3 x 6): one replicated row, cut into parts, cropped back
    odd = AdaptiveModulation(C // 2, (3, 6))
    assert n_params(odd) == 2 * (6 * 6 + 6)  # P = 2 x 3 positions per padded part
    with torch.no_grad():
        odd.weight_lr.weight.zero_()
        odd.weight_lr.bias.zero_()
    d_lr3 = torch.randn(B, C // 2, 3, 6)
    _, out3 = odd(torch.randn(B, C // 2, 3, 6), d_lr3)
    assert out3.shape == d_lr3.shape
    bottom = torch.cat([d_lr3[..., 2:, :3], d_lr3[..., 2:, :3]], dim=-2)  # row 2 and its copy
    expected = 0.9 * d_lr3[..., 2:, :3] + 0.1 * bottom.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(out3[..., 2:, :3], expected, atol=1e-6)
    with pytest.raises(ValueError, match="distinct maps"):
        mod(torch.randn(B, C // 2, 4, 4), torch.randn(B, C // 2, 4, 4))


def test_condition_injection_replaces_the_features_as_released():
    torch.manual_seed(0)
    inject = ConditionInjection(C, 3 * C // 2)
    h = torch.randn(B, C, 6, 6)
    cond = torch.randn(B, 3 * C // 2, 1, 1)  # one condition token: softmax weight 1
    out = inject(h, cond)
    expected = inject.attention.to_v(cond.flatten(2).transpose(1, 2))  # (B, 1, C)
    assert torch.allclose(out, expected.transpose(1, 2)[..., None].expand(B, C, 6, 6), atol=1e-6)
    assert torch.allclose(inject(2 * h, cond), out, atol=1e-6)  # h itself is not kept


# ---------------------------------------------------------------------------- network.py


def test_network_shapes_and_zero_output():
    net = make_net()
    out, loss = net(**make_batch(), ratio=0.25)
    assert out.shape == (B, 2 * G, H, H)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised final conv

    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    batch = make_batch()
    out, loss = net(**batch)
    (torch.nn.functional.mse_loss(out, torch.randn_like(out)) + 0.01 * loss).backward()
    opt.step()
    with torch.no_grad():
        after, _ = net(**batch)
    assert after.abs().max() > 0


def test_network_one_channel_image_odd_lr_and_other_image_size():
    net = make_net(image_channels=1, lr_hw=(13, 13))
    out, _ = net(**make_batch(lr=13, image_channels=1, image_px=40))
    assert out.shape == (B, 2 * G, H, H)


def test_an_lr_map_smaller_than_the_encoder_takes_is_repeated_up_to_it():
    batch = make_batch()
    batch["lr"] = batch["lr"][..., :3, :6]  # shorter than the encoder's downsampling (lr_side)
    repeated = batch["lr"].repeat_interleave(2, -2).repeat_interleave(2, -1)  # every value 2 x 2
    with torch.no_grad():
        net = make_net(lr_hw=(3, 6))  # with the gene graph (built on the 3 x 6 map)
        assert min(batch["lr"].shape[-2:]) < net.lr_side
        randomise_zero_params(net)
        out, _ = net(**batch)
        other, _ = net(**{**batch, "lr": batch["lr"] + 0.5})
        plain = make_net(graph=False)  # no graph: the repeated map is a valid input too
        randomise_zero_params(plain)
        small, _ = plain(**batch)
        big, _ = plain(**{**batch, "lr": repeated})
    assert out.shape == (B, 2 * G, H, H) and torch.isfinite(out).all()
    assert not torch.allclose(out, other)  # the LR map still conditions the output
    torch.testing.assert_close(small, big)  # nearest repetition: nothing mixed, nothing lost


def test_network_bad_sizes_and_missing_graph():
    net = DiffSTNet(genes=G, image_channels=3, channels=C, lr_hw=(LR, LR), hr_hw=(H, H), tile_px=P)
    with pytest.raises(RuntimeError, match="set_adjacency"):
        net(**make_batch())
    net.set_gene_totals(TOTALS)
    batch = make_batch()
    batch["x_t"] = torch.randn(B, G, 22, 22)
    with pytest.raises(ValueError, match="22"):
        net(**batch)


def test_draws_of_one_input_share_its_conditioning_streams():
    """rows: U inputs conditioning B = U K rows give what the K-times repeated inputs give."""
    net = make_net()
    randomise_zero_params(net)
    net.eval().double()  # float64: sums in another order differ by ~1e-16, not ~1e-7
    u, k = 3, 4
    g = torch.Generator().manual_seed(3)
    lr = torch.rand(u, G, LR, LR, generator=g, dtype=torch.float64)
    image = torch.rand(u, 3, H, H, generator=g, dtype=torch.float64)
    tiles = torch.rand(u, T, 3, P, P, generator=g, dtype=torch.float64)
    rows = torch.arange(u).repeat_interleave(k)
    x_t = torch.randn(u * k, G, H, H, generator=g, dtype=torch.float64)
    t = torch.tensor([700] * k + [10] * k + [300] * k)  # shared within an input only
    with torch.no_grad():
        repeated, _ = net(x_t, t, lr[rows], image[rows], tiles[rows])
        shared, _ = net(x_t, t, lr, image, tiles, rows=rows)
        other, _ = net(x_t, t, lr.flip(0), image.flip(0), tiles.flip(0), rows=rows)
    assert repeated.abs().max() > 0.1
    # sums in another order (the convolutions' batch size differs): 1e-10 of the scale
    scale = float(repeated.abs().max())
    torch.testing.assert_close(shared, repeated, rtol=0, atol=1e-10 * scale)
    assert (other - repeated).abs().max() > 1e-2  # the rows do pick the input
    with pytest.raises(ValueError, match="share t"):
        net(x_t, torch.arange(u * k), lr, image, tiles, rows=rows)
    with pytest.raises(ValueError, match="indices below 3"):
        net(x_t, t, lr, image, tiles, rows=rows + 1)


def test_image_encoder_shares_x_t_blocks_and_lr_encoder_does_not():
    net = make_net()
    shared = list(net.xt_encoder.res_blocks.parameters())
    assert shared
    assert all(
        a is b for a, b in zip(net.image_encoder.res_blocks.parameters(), shared, strict=True)
    )
    assert not any(
        a is b for a, b in zip(net.lr_encoder.res_blocks.parameters(), shared, strict=True)
    )
    assert net.image_encoder.input_conv.weight is not net.xt_encoder.input_conv.weight
    own = {id(p) for p in net.image_encoder.down_blocks.parameters()}
    assert not own & {id(p) for p in net.xt_encoder.parameters()}


@pytest.mark.parametrize(
    ("switch", "component"),
    [
        ("graph", GeneGraph),
        ("cell_attention", CellToTissueAttention),
        ("modulation", AdaptiveModulation),
        ("disentangle", Disentangle),
    ],
)
def test_ablation_switches_remove_their_component(switch, component):
    full = make_net()
    net = make_net(**{switch: False})
    assert not any(isinstance(m, component) for m in net.modules())
    if switch == "disentangle":
        # Its stand-in (one conv3x3 per modality to half the width) has exactly the size of the
        # two shared convs, so the count stays; the common part and the loss are gone.
        assert n_params(net) == n_params(full)
    else:
        assert n_params(net) < n_params(full)
    out, loss = net(**make_batch())
    assert out.shape == (B, 2 * G, H, H)
    if switch == "disentangle":
        assert loss.item() == 0.0


def test_tiles_beyond_the_kept_fraction_do_not_matter():
    net = make_net()
    randomise_zero_params(net)
    batch = make_batch()
    changed = dict(batch, tiles=batch["tiles"].clone())
    changed["tiles"][:, T // 4 :] = torch.rand_like(changed["tiles"][:, T // 4 :])
    with torch.no_grad():
        assert torch.equal(net(**batch, ratio=0.25)[0], net(**changed, ratio=0.25)[0])
        assert not torch.allclose(net(**batch, ratio=1.0)[0], net(**changed, ratio=1.0)[0])


def test_gradients_reach_every_parameter():
    net = make_net()
    # Zero-initialised layers would block the gradient of everything upstream of them.
    randomise_zero_params(net)
    out, loss = net(**make_batch(), ratio=1.0)
    (out.sum() + loss).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    zero = [n for n, p in net.named_parameters() if p.grad is not None and not p.grad.any()]
    assert not missing and not zero, (missing, zero)
