"""The naive baseline of bench/serve.py: one FastAPI endpoint calling sentence-transformers
``encode_query`` (a two-tower model's query route) and a flat FAISS search per request. No
cache, no batching, no thread offload."""

from __future__ import annotations

import argparse

import faiss
import numpy as np
import pandas as pd
import uvicorn
from fastapi import FastAPI
from sentence_transformers import SentenceTransformer


def create_app(index_dir: str, model_dir: str) -> FastAPI:
    model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
    index = faiss.read_index(f"{index_dir}/index.faiss")
    rows = pd.read_parquet(f"{index_dir}/rows.parquet")
    ids, titles = rows["product_id"].to_numpy(), rows["title"].to_numpy()
    app = FastAPI()

    @app.get("/search")
    def search(q: str, k: int = 10) -> dict[str, object]:
        vec = model.encode_query([q], normalize_embeddings=True)
        scores, idx = index.search(np.asarray(vec, dtype=np.float32), k)
        return {
            "results": [
                {"product_id": str(ids[i]), "title": str(titles[i]), "score": float(s)}
                for s, i in zip(scores[0], idx[0], strict=True)
            ]
        }

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.index, args.model), host="127.0.0.1", port=args.port, log_level="warning"
    )
