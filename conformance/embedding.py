"""Deterministic embedders for testing semantic retrieval (MS-7, MS-8).

The kit passes an embedder to a memory store as ``StoreContext.options["embedder"]``. The
:class:`HashingEmbedder` needs no model and no network: it counts words into hashed buckets, so
the same text always gives the same vector on every machine and Python version, and texts that
share words are similar. The broken embedders exercise MS-8.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

__all__ = ["DEFAULT_DIMENSIONS", "BrokenEmbedder", "EmbedderFailure", "HashingEmbedder"]

#: Buckets of a :class:`HashingEmbedder` unless told otherwise.
DEFAULT_DIMENSIONS = 64

_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """A bag-of-words embedder: each case-folded word adds 1.0 to the bucket its hash picks.

    The hash is BLAKE2b (stable across processes, unlike ``hash()``), so vectors are the same
    everywhere; their entries are small integers, so similarities are exactly reproducible.
    ``calls`` counts :meth:`embed` calls and ``texts_embedded`` the texts they carried (tests
    of cost may read them).
    """

    def __init__(self, dimensions: int = DEFAULT_DIMENSIONS) -> None:
        if dimensions < 1:
            raise ValueError("an embedder needs at least one dimension")
        self.dimensions = dimensions
        self.calls = 0
        self.texts_embedded = 0

    def vector(self, text: str) -> list[float]:
        """The vector of one text (synchronously; the models use it)."""
        vector = [0.0] * self.dimensions
        for word in _WORD.findall(text.casefold()):
            digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8)
            vector[int.from_bytes(digest.digest(), "big") % self.dimensions] += 1.0
        return vector

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of ``texts``, in order, without counting a call."""
        return [self.vector(text) for text in texts]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of ``texts``, in order (the :class:`Embedder` protocol)."""
        self.calls += 1
        self.texts_embedded += len(texts)
        return self.embed_sync(texts)


class EmbedderFailure(RuntimeError):
    """What a :class:`BrokenEmbedder` in mode ``"raise"`` raises."""


class BrokenEmbedder:
    """An embedder that fails in one way, to test MS-8.

    Modes: ``"raise"`` (raises :class:`EmbedderFailure`), ``"count"`` (one vector too few),
    ``"dimensions"`` (the vectors differ in length), ``"nan"`` (a NaN entry).
    """

    MODES = ("raise", "count", "dimensions", "nan")

    def __init__(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {self.MODES}")
        self.mode = mode

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Fail as :attr:`mode` says (returning malformed vectors where it does not raise)."""
        if self.mode == "raise":
            raise EmbedderFailure("the embedding service is down")
        vectors = [[1.0, float(index)] for index, _ in enumerate(texts)]
        if self.mode == "count":
            return vectors[:-1] if vectors else [[1.0, 0.0]]
        if self.mode == "dimensions":
            return [vector + [0.0] * index for index, vector in enumerate(vectors)]
        return [[float("nan"), 1.0] for _ in texts]
