"""The yardstick for `benches/embed.rs`: all-MiniLM-L6-v2 through sentence-transformers on
PyTorch (CPU), on the same model folder, rows, threads and batch size as our provider.

It builds the same sentence vectors as ours (mean of token vectors under the attention mask,
L2-normalised, texts cut at 256 tokens), encodes every row of the rows file (one row a line)
after a warm-up, and prints one JSON line: rows/s (median of the runs), threads, batch, CPU
time per wall second, peak RSS, and, given `--ours`, the smallest cosine between its vectors
and ours for the first rows. It only reads the local folder; nothing is downloaded.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

# Local files only: a missing file must fail here, not turn into a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MAX_SEQ_LENGTH = 256


def load(model_dir):
    from sentence_transformers import SentenceTransformer

    try:  # the module's home since sentence-transformers 6
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    if os.path.isfile(os.path.join(model_dir, "modules.json")):
        return SentenceTransformer(model_dir, device="cpu")
    # A bare BERT folder (config, tokenizer, weights): assemble the pipeline ours follows.
    word = models.Transformer(model_dir, max_seq_length=MAX_SEQ_LENGTH)
    dimension = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pooling = models.Pooling(dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")


def encode(model, rows, batch):
    return model.encode(
        rows, batch_size=batch, show_progress_bar=False, convert_to_numpy=True
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--rows", required=True, help="a text file, one row a line")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm-up", type=int, default=32, help="rows embedded untimed first")
    parser.add_argument("--ours", help="JSON list of our vectors for the first rows")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with open(args.rows, encoding="utf-8") as f:
        rows = [line.rstrip("\n") for line in f if line.strip()]
    model = load(args.model_dir)

    encode(model, rows[: args.warm_up], args.batch)
    times, cpu, wall, vectors = [], 0.0, 0.0, None
    for _ in range(args.runs):
        cpu_before, started = time.process_time(), time.perf_counter()
        vectors = encode(model, rows, args.batch)
        elapsed = time.perf_counter() - started
        cpu += time.process_time() - cpu_before
        wall += elapsed
        times.append(elapsed)

    result = {
        "rows_per_s": len(rows) / statistics.median(times),
        "threads": args.threads,
        "batch": args.batch,
        "rows": len(rows),
        "runs_s": [round(t, 4) for t in times],
        "cpu_per_wall": cpu / wall,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
    }
    if args.ours:
        with open(args.ours, encoding="utf-8") as f:
            ours = json.load(f)
        cosines = [
            float(sum(float(a) * float(b) for a, b in zip(mine, theirs)))
            for mine, theirs in zip(ours, vectors)
        ]
        result["compared"] = len(cosines)
        result["cosine_min"] = min(cosines) if cosines else None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
