"""The autocomplete artifact: suggestions.parquet + embeddings.npy + manifest.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aisle.artifacts import read_manifest, sha256_file, write_manifest
from aisle.errors import ArtifactError

KIND = "aisle.autocomplete"
FORMAT_VERSION = 1
SUGGESTIONS = "suggestions.parquet"
EMBEDDINGS = "embeddings.npy"
SCHEMA = pa.schema([("text", pa.string()), ("key", pa.string()), ("canonical", pa.string()),
                    ("source", pa.string()), ("popularity", pa.int64())])


@dataclass(frozen=True)
class Artifact:
    """Suggestions in rank order (row = rank) and their unit query-tower embeddings."""

    suggestions: pd.DataFrame
    embeddings: np.ndarray  # (N, D) float32, unit rows
    manifest: dict[str, Any]


def write_artifact(directory: Path, suggestions: pd.DataFrame, embeddings: np.ndarray,
                   manifest: dict[str, Any]) -> None:
    """Write into ``directory`` (a temp dir the caller publishes with ``atomic_dir``)."""
    assert len(suggestions) == len(embeddings)
    pq.write_table(pa.Table.from_pandas(suggestions[SCHEMA.names], schema=SCHEMA,
                                        preserve_index=False), directory / SUGGESTIONS)
    np.save(directory / EMBEDDINGS, np.ascontiguousarray(embeddings, dtype=np.float32))
    files = {name: sha256_file(directory / name) for name in (SUGGESTIONS, EMBEDDINGS)}
    write_manifest(directory, {"kind": KIND, "format_version": FORMAT_VERSION,
                               "files": files, **manifest})


def _broken(directory: Path, what: str) -> ArtifactError:
    return ArtifactError(
        f"autocomplete index {directory} is corrupt: {what}; rebuild it with "
        "`aisle autocomplete build --data DIR --out DIR`"
    )


def load_artifact(directory: Path, verify: bool = True) -> Artifact:
    """Read and check an artifact: manifest kind and version, file checksums, shapes."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no such autocomplete index; build one with "
                            "`aisle autocomplete build --data DIR --out DIR`")
    manifest = read_manifest(directory, KIND)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{directory} has autocomplete format "
                            f"{manifest.get('format_version')}, this code reads "
                            f"{FORMAT_VERSION}; rebuild it")
    for name, digest in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise _broken(directory, f"{name} is missing")
        if verify and sha256_file(path) != digest:
            raise _broken(directory, f"{name} does not match its checksum in the manifest")
    try:
        suggestions = pq.read_table(directory / SUGGESTIONS).to_pandas()
        embeddings = np.load(directory / EMBEDDINGS, allow_pickle=False)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise _broken(directory, str(e)) from e
    n, dim = manifest["counts"]["total"], manifest["model"]["dim"]
    if embeddings.shape != (n, dim) or len(suggestions) != n:
        raise _broken(directory, f"{len(suggestions)} suggestions and embeddings of shape "
                                 f"{embeddings.shape}, manifest says {n} x {dim}")
    if list(suggestions.columns) != SCHEMA.names:
        raise _broken(directory, f"{SUGGESTIONS} has columns {list(suggestions.columns)}")
    return Artifact(suggestions, embeddings.astype(np.float32, copy=False), manifest)
