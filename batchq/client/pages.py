"""List pages: what a list operation returns (:class:`Listing`), and the sync and async pages made of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from batchq.client.effects import Op

T = TypeVar("T")
FetchT = TypeVar("FetchT")


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """One page as a list operation returns it; a runner makes it a :class:`SyncPage` or an :class:`AsyncPage`.

    Attributes:
        data: The items of this page.
        has_more: Whether the server holds more items after ``last_id``.
        first_id: Id of the first item, if any.
        last_id: Id of the last item, if any.
        after: The operation listing the page after a given id.
    """

    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None
    after: Callable[[str], Op[Listing[T]]]


class _Page(Generic[T, FetchT]):
    """What both pages share: their fields, and whether there is a next page."""

    def __init__(
        self,
        data: list[T],
        *,
        has_more: bool,
        first_id: str | None = None,
        last_id: str | None = None,
        fetch: FetchT | None = None,
    ) -> None:
        self.data = data
        self.has_more = has_more
        self.first_id = first_id
        self.last_id = last_id
        self._fetch = fetch

    @classmethod
    def of(cls, listing: Listing[T], fetch: FetchT) -> Self:
        """The page of a listing, fetching the next one with ``fetch``."""
        return cls(
            listing.data, has_more=listing.has_more, first_id=listing.first_id, last_id=listing.last_id, fetch=fetch
        )

    def has_next_page(self) -> bool:
        return self.has_more and bool(self.data) and self._fetch is not None

    def _next_after(self) -> str:
        return self.last_id or _item_id(self.data[-1])

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(data=<{len(self.data)} items>, has_more={self.has_more}, last_id={self.last_id!r})"


class SyncPage(_Page[T, Callable[[str], "SyncPage[T]"]]):
    """One page of a list (``data``, ``has_more``, ``first_id``, ``last_id``); iterating it walks every page.

    Args:
        data: The items of this page.
        has_more: Whether the server holds more items after ``last_id``.
        first_id: Id of the first item, if any.
        last_id: Id of the last item, if any.
        fetch: Fetches the page after a given id (None: this page is the last).
    """

    def get_next_page(self) -> SyncPage[T]:
        """Fetch the next page.

        Raises:
            StopIteration: There is no next page.
        """
        if not self.has_next_page() or self._fetch is None:
            raise StopIteration("no next page")
        return self._fetch(self._next_after())

    def auto_paging_iter(self) -> Iterator[T]:
        """Every item of this page and of the pages after it, fetched as needed."""
        page = self
        while True:
            yield from page.data
            if not page.has_next_page():
                return
            page = page.get_next_page()

    def __iter__(self) -> Iterator[T]:
        return self.auto_paging_iter()


class AsyncPage(_Page[T, Callable[[str], Awaitable["AsyncPage[T]"]]]):
    """The asyncio twin of :class:`SyncPage`: ``async for`` walks every page; ``fetch`` is awaited."""

    async def get_next_page(self) -> AsyncPage[T]:
        """Fetch the next page.

        Raises:
            StopAsyncIteration: There is no next page.
        """
        if not self.has_next_page() or self._fetch is None:
            raise StopAsyncIteration("no next page")
        return await self._fetch(self._next_after())

    async def auto_paging_iter(self) -> AsyncIterator[T]:
        """Every item of this page and of the pages after it, fetched as needed."""
        page = self
        while True:
            for item in page.data:
                yield item
            if not page.has_next_page():
                return
            page = await page.get_next_page()

    def __aiter__(self) -> AsyncIterator[T]:
        return self.auto_paging_iter()


def _item_id(item: object) -> str:
    item_id = getattr(item, "id", None)
    if not isinstance(item_id, str):
        raise TypeError(f"cannot page after an item without an id: {item!r}")
    return item_id
