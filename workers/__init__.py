"""batchq's Celery workers. ``celery -A workers worker -Q intake,requests,finalize`` finds ``app`` here."""

from workers.app import app

__all__ = ["app"]
