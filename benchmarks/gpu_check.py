"""GPU check: the encoder pipeline and an exact kNN graph on one GPU, one table in about 8 minutes.

Needs only torch, torchvision, numpy and pillow (what the lent GPU machine has) plus open_clip,
carried as a wheel (`pip download open_clip_torch --no-deps -d wheels/`; its own deps, timm
among them, are on the machine). Without open_clip the same ViT-B/32 image tower comes from
timm (`vit_base_patch32_clip_224`) and the table says so. No winnow import, no faiss.

1. Encoder: open_clip ViT-B-32 with random weights, bfloat16, channels_last. JPEG bytes
   (synthetic photos-like images, 256 px) are decoded on the GPU in batches
   (torchvision.io.decode_jpeg on CUDA), resized and normalised on the GPU, and embedded:
   images/s end to end. The same decoded batches through the bare forward alone: the model's
   ceiling. End to end close to bare = decoding is not the bottleneck.
2. kNN graph: exact top-k of N x 512 unit rows (float16 on the GPU) in blocks of torch matrix
   products (queries x base blocks, top-k per block, merged), at 1M and 10M, with recall@10 of
   sampled rows against float32 search.

    python benchmarks/gpu_check.py                      # on the GPU machine (see benchmarks/README.md)
    python benchmarks/gpu_check.py --dry-run            # tiny sizes on CPU (CI runs this)
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_jpegs(count: int, size: int, seed: int = 0) -> list[bytes]:
    """`count` distinct JPEG files (bytes): smooth colour fields plus noise, like photos to a codec."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(count):
        a, b, c = rng.uniform(0, 6, 3)
        img = np.stack([np.sin(a * xx + b * yy + c + k) for k in range(3)], axis=-1) * 90 + 128
        img += rng.normal(0, 12, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def load_model(device, dtype):
    """ViT-B/32 image tower with random weights: open_clip's, else timm's; (model, name)."""
    import torch

    try:
        import open_clip

        model = open_clip.create_model("ViT-B-32", pretrained=None).visual
        name = f"open_clip {open_clip.__version__} ViT-B-32 (random weights)"
    except ImportError:
        import timm

        model = timm.create_model("vit_base_patch32_clip_224", pretrained=False, num_classes=512)
        name = f"timm {timm.__version__} vit_base_patch32_clip_224 (open_clip not installed; random weights)"
    model = model.to(device=device, dtype=dtype).eval().to(memory_format=torch.channels_last)
    return model, name


def decode_batch(jpegs: list[bytes], device, image_size: int, dtype):
    """JPEG bytes -> (B, 3, S, S) normalised `dtype` on `device` (decoded there when CUDA)."""
    import torch
    from torchvision.io import decode_jpeg

    data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    images = decode_jpeg(data, device=device) if device.type == "cuda" else [decode_jpeg(d) for d in data]
    def resize(x):  # (B, 3, H, W) uint8 -> float, bilinear with antialias (as PIL's resize)
        return torch.nn.functional.interpolate(x.float(), size=(image_size, image_size), mode="bilinear",
                                               antialias=True, align_corners=False)

    if len({tuple(i.shape) for i in images}) == 1:
        batch = resize(torch.stack(images))
    else:
        batch = torch.cat([resize(i[None]) for i in images])
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1) * 255
    batch = ((batch.to(device) - mean) / std).to(dtype)
    return batch.contiguous(memory_format=torch.channels_last)


def bench_encoder(device, *, batch: int, batches: int, dtype, image_size: int = 224) -> dict:
    import torch

    model, name = load_model(device, dtype)
    jpegs = make_jpegs(min(batch * batches, 1024), 256)
    plan = [[jpegs[(b * batch + i) % len(jpegs)] for i in range(batch)] for b in range(batches)]
    with torch.inference_mode():
        model(decode_batch(plan[0], device, image_size, dtype))  # warm-up (kernels, cuDNN plans)
        _sync(device)
        t0 = time.perf_counter()
        decoded = []
        for p in plan:
            x = decode_batch(p, device, image_size, dtype)
            emb = model(x)
            emb = torch.nn.functional.normalize(emb.float(), dim=-1).cpu()  # what a writer receives
            decoded.append(x)
        _sync(device)
        end_to_end = time.perf_counter() - t0
        t0 = time.perf_counter()
        for x in decoded:
            model(x)
        _sync(device)
        bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in plan:
            decode_batch(p, device, image_size, dtype)
        _sync(device)
        decode = time.perf_counter() - t0
    n = batch * batches
    return {"model": name, "images": n, "batch": batch, "dtype": str(dtype).replace("torch.", ""),
            "decode_on": device.type, "end_to_end_images_per_s": n / end_to_end, "bare_forward_images_per_s": n / bare,
            "decode_only_images_per_s": n / decode, "embedding_dim": int(emb.shape[1])}


def block_topk(s, k: int, group: int = 32):
    """Exact row-wise top-k of s (Q, B) without a full-width top-k: the k groups of `group`
    columns with the largest maxima hold every top-k value (each top-k value's group has a max
    at least the k-th value, and at most k groups can), so one max-reduction (a bandwidth pass)
    and a top-k over k x group candidates replace torch's top-k over B columns."""
    q, b = s.shape
    if b % group or b < 2 * group * k:
        return s.topk(k, dim=1)
    groups = s.view(q, b // group, group)
    top_g = groups.amax(dim=2).topk(k, dim=1).indices  # (Q, k) group numbers
    cand = groups.gather(1, top_g[:, :, None].expand(-1, -1, group)).reshape(q, k * group)
    vals, pos = cand.topk(k, dim=1)
    return vals, top_g.gather(1, pos // group) * group + pos % group


def knn_graph_blocks(x, k: int, *, query_block: int, base_block: int):
    """Exact top-k (self excluded) of every row of x (N, D) unit rows among all rows, in blocks:
    (query_block x base_block) products, top-(k+1) per block, merged per query block."""
    import torch

    n = x.shape[0]
    ids = torch.empty((n, k), dtype=torch.int64, device=x.device)
    sims = torch.empty((n, k), dtype=torch.float32, device=x.device)
    for q0 in range(0, n, query_block):
        q = x[q0 : q0 + query_block]
        best_s = torch.full((len(q), k + 1), float("-inf"), device=x.device)
        best_i = torch.full((len(q), k + 1), -1, dtype=torch.int64, device=x.device)
        for b0 in range(0, n, base_block):
            s = q @ x[b0 : b0 + base_block].T  # float16 products, float32 accumulation (tensor cores)
            rows = torch.arange(q0, q0 + len(q), device=x.device)
            local = rows - b0
            inside = (local >= 0) & (local < s.shape[1])
            s[inside.nonzero().squeeze(1), local[inside]] = float("-inf")  # never a row's own neighbour
            top_s, top_i = block_topk(s, min(k + 1, s.shape[1]))
            cand_s = torch.cat([best_s, top_s.float()], dim=1)
            cand_i = torch.cat([best_i, top_i + b0], dim=1)
            best_s, order = cand_s.topk(k + 1, dim=1)
            best_i = cand_i.gather(1, order)
        sims[q0 : q0 + len(q)] = best_s[:, :k]
        ids[q0 : q0 + len(q)] = best_i[:, :k]
    return ids, sims


def bench_knn(device, n: int, *, dim: int = 512, k: int = 10, query_block: int, base_block: int,
              sample: int = 256, seed: int = 0) -> dict:
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    # Clustered rows (1000 centres), generated on the device in chunks: no host copy of N x D.
    centres = torch.nn.functional.normalize(torch.randn(1000, dim, generator=gen, device=device), dim=1)
    store_dtype = torch.float16 if device.type == "cuda" else torch.float32
    x = torch.empty((n, dim), dtype=store_dtype, device=device)
    for a in range(0, n, 1 << 20):
        b = min(n, a + (1 << 20))
        c = torch.randint(0, 1000, (b - a,), generator=gen, device=device)
        rows = centres[c] + 0.6 * torch.randn(b - a, dim, generator=gen, device=device) / dim**0.5
        x[a:b] = torch.nn.functional.normalize(rows, dim=1).to(store_dtype)
    _sync(device)
    t0 = time.perf_counter()
    ids, sims = knn_graph_blocks(x, k, query_block=query_block, base_block=base_block)
    _sync(device)
    seconds = time.perf_counter() - t0
    # Recall@k of sampled rows against float32 brute force.
    rows = torch.randperm(n, generator=gen, device=device)[:sample]
    s = x[rows].float() @ x.float().T if n * dim <= 1 << 28 else torch.cat(
        [x[rows].float() @ x[a : a + (1 << 20)].float().T for a in range(0, n, 1 << 20)], dim=1)
    s[torch.arange(len(rows), device=device), rows] = float("-inf")
    truth = s.topk(k, dim=1).indices
    hits = sum(len(set(t.tolist()) & set(g.tolist())) for t, g in zip(truth.cpu(), ids[rows].cpu(), strict=True))
    return {"n": n, "dim": dim, "k": k, "seconds": seconds, "recall_at_10": hits / (len(rows) * k),
            "stored": str(store_dtype).replace("torch.", ""), "query_block": query_block, "base_block": base_block}


def table(encoder: dict, knn: list[dict], device_name: str) -> str:
    lines = [f"device: {device_name}", "",
             "| measure | value |", "|---|---:|",
             f"| encoder | {encoder['model']}, {encoder['dtype']}, channels_last, batch {encoder['batch']} |",
             f"| images/s end to end (JPEG bytes -> embeddings on host, decode on {encoder['decode_on']}) | "
             f"{encoder['end_to_end_images_per_s']:,.0f} |",
             f"| images/s bare forward (same batches, decoded) | {encoder['bare_forward_images_per_s']:,.0f} |",
             f"| images/s decode + resize only | {encoder['decode_only_images_per_s']:,.0f} |"]
    for r in knn:
        lines.append(f"| exact kNN graph {r['n']:,} x {r['dim']}, k={r['k']} ({r['stored']} rows, blocks "
                     f"{r['query_block']} x {r['base_block']}): seconds / recall@10 vs float32 | "
                     f"{r['seconds']:.1f} s / {r['recall_at_10']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (checks the code, measures nothing)")
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="kNN graph sizes (default 1M and 10M)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--query-block", type=int, default=16384, help="kNN query rows per block")
    ap.add_argument("--base-block", type=int, default=1 << 18, help="kNN base rows per block (q x b float16 products)")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    import torch

    if args.dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        encoder = bench_encoder(device, batch=2, batches=2, dtype=torch.bfloat16)
        sizes = args.sizes or [3000]
        # Base blocks of 1024 take block_topk's grouped path, the last (952) the plain one.
        knn = [bench_knn(device, n, dim=64, query_block=700, base_block=1024, sample=64) for n in sizes]
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --dry-run on CPU", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        encoder = bench_encoder(device, batch=args.batch, batches=args.batches, dtype=torch.bfloat16)
        knn = []
        for n in args.sizes or [1_000_000, 10_000_000]:
            knn.append(bench_knn(device, n, query_block=args.query_block, base_block=args.base_block))
            print(json.dumps(knn[-1]), file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    print(table(encoder, knn, name))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as fh:
            json.dump({"device": name, "encoder": encoder, "knn": knn}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
