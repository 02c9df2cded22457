"""The batches' dashboard: ``/dashboard``, a page of plain JavaScript modules over the ``/v1`` API.

The page holds no data of its own: it signs in with an API key kept in the tab (sessionStorage) and reads the
account's batches, files and webhook endpoints through ``/v1`` with that key, so it sees exactly what the API lets
the key see. The operator page reads ``/metrics`` with the metrics token. Two small JSON helpers live under
``/dashboard/api`` with the API's own auth; every dashboard response carries a strict Content-Security-Policy.
"""

from batchq.api.dashboard.mount import mount_dashboard

__all__ = ["mount_dashboard"]
