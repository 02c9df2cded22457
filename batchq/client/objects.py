"""Answers of the server that the wire schemas (:mod:`batchq.schemas`) do not model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class BatchDeleted(BaseModel):
    """Answer of ``DELETE /v1/batches/{id}``: the batch, its files and outputs are gone."""

    id: str
    object: Literal["batch.deleted"] = "batch.deleted"
    deleted: bool
