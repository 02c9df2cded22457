"""``files`` and ``batches`` declared once: each method is an operation, run by the client it is reached through.

``client.batches.retrieve`` is ``Endpoint(batch_ops.retrieve_batch)``: on a sync client it returns the batch, on
an async one a coroutine of it. A list operation becomes a :class:`SyncPage` or :class:`AsyncPage`, a streamed one a
:class:`LineStream` or :class:`AsyncLineStream`. The typing below says so to type checkers; the runtime work is
each client's ``_bind``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from batchq.client import batch_ops, file_ops
from batchq.client.connection import Connection
from batchq.client.effects import Op
from batchq.client.lines import AsyncLineStream, Lines, LineStream
from batchq.client.pages import AsyncPage, Listing, SyncPage

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
#: An operation with its connection bound: what a client's ``_bind`` turns into a method.
BoundOp = Callable[..., Op[Any]]


class SyncBinder:
    """A resource of the sync client: makes each operation a function that runs it."""

    def _bind(self, op: BoundOp) -> Callable[..., Any]:
        raise NotImplementedError


class AsyncBinder:
    """A resource of the async client: makes each operation a coroutine function."""

    def _bind(self, op: BoundOp) -> Callable[..., Coroutine[Any, Any, Any]]:
        raise NotImplementedError


class Endpoint(Generic[P, R]):
    """A resource method made of an operation (a non-data descriptor, cached on the instance on first use)."""

    def __init__(self, op: Callable[Concatenate[Connection, P], Op[R]]) -> None:
        self._op = op
        self._name = op.__name__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Endpoint[P, R]: ...
    @overload
    def __get__(self: Endpoint[P, Listing[T]], obj: SyncBinder, owner: type[Any]) -> Callable[P, SyncPage[T]]: ...
    @overload
    def __get__(self: Endpoint[P, Lines[T]], obj: SyncBinder, owner: type[Any]) -> Callable[P, LineStream[T]]: ...
    @overload
    def __get__(self, obj: SyncBinder, owner: type[Any]) -> Callable[P, R]: ...
    @overload
    def __get__(
        self: Endpoint[P, Listing[T]], obj: AsyncBinder, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, AsyncPage[T]]]: ...
    @overload
    def __get__(
        self: Endpoint[P, Lines[T]], obj: AsyncBinder, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, AsyncLineStream[T]]]: ...
    @overload
    def __get__(self, obj: AsyncBinder, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, obj: SyncBinder | AsyncBinder | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        method = obj._bind(self._op)
        # help() and IDEs show the operation's docs and arguments, without its connection
        signature = inspect.signature(self._op)
        method.__name__ = method.__qualname__ = self._name
        method.__doc__ = self._op.__doc__
        method.__signature__ = signature.replace(  # type: ignore[union-attr]
            parameters=list(signature.parameters.values())[1:], return_annotation=inspect.Signature.empty
        )
        obj.__dict__[self._name] = method
        return method


class FileEndpoints:
    """``client.files``: upload, list, read and delete files."""

    create = Endpoint(file_ops.create_file)
    retrieve = Endpoint(file_ops.retrieve_file)
    list = Endpoint(file_ops.list_files)
    content = Endpoint(file_ops.file_content)
    iter_lines = Endpoint(file_ops.file_lines)
    delete = Endpoint(file_ops.delete_file)


class BatchEndpoints:
    """``client.batches``: create and follow batches, read their results, retry their failures."""

    create = Endpoint(batch_ops.create_batch)
    retrieve = Endpoint(batch_ops.retrieve_batch)
    list = Endpoint(batch_ops.list_batches)
    cancel = Endpoint(batch_ops.cancel_batch)
    results = Endpoint(batch_ops.batch_results)
    delete = Endpoint(batch_ops.delete_batch)
    submit = Endpoint(batch_ops.submit)
    wait = Endpoint(batch_ops.wait)
    retry_failed = Endpoint(batch_ops.retry_failed)
