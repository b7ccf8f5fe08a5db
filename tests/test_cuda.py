"""GPU checks (skipped without CUDA): the core and a tokenizer run on the device the data is on,
keep fp32 codebooks under bf16 autocast, and agree with the CPU."""

from __future__ import annotations

import copy

import pytest
import torch

from mmtok.image.tokenizer import image_tokenizer
from mmtok.quantization import FSQ, ResidualVQ, VectorQuantizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize(
    "make",
    [
        lambda: VectorQuantizer(32, 512),
        lambda: VectorQuantizer(32, 512, codebook_dim=8, cosine=True),
        lambda: ResidualVQ(32, 256, 4, quantizer_dropout=0.5),
        lambda: FSQ(32, [8, 5, 5, 5]),
    ],  # fmt: skip
)
def test_quantizers_on_cuda_match_cpu(make):
    torch.manual_seed(0)
    q = make()
    x = torch.randn(8, 1024, 32)
    q.train()
    for _ in range(3):
        q(x)
    q.eval()
    gpu = copy.deepcopy(q).cuda()
    out = gpu(x.cuda())
    assert out.ids.device.type == "cuda"
    assert torch.equal(out.quantized, gpu.decode_ids(out.ids))
    agree = (out.ids.cpu() == q(x).ids).float().mean().item()
    assert agree > 0.999, agree


def test_training_on_cuda_under_bf16_autocast():
    torch.manual_seed(0)
    q = VectorQuantizer(64, 1024).cuda().train()
    x = torch.randn(4, 4096, 64, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = q(x.bfloat16())
    out.quantized.float().sum().backward()
    assert q.codebook.embed.dtype == torch.float32 and x.grad is not None
    assert out.metrics["used_codes"] > 500


def test_image_tokenizer_on_cuda():
    torch.manual_seed(0)
    tok = image_tokenizer(downsample=8, hidden=32, latent_dim=32, codebook_size=256)
    tok.train()
    tok(torch.rand(4, 3, 64, 64) * 2 - 1)
    tok.eval()
    x = torch.rand(3, 3, 70, 90) * 2 - 1
    gpu = copy.deepcopy(tok).cuda()
    tokens = gpu.encode(x.cuda())
    assert gpu.decode(tokens).shape == x.shape
    assert (tokens.ids.cpu() == tok.encode(x).ids).float().mean() > 0.99
