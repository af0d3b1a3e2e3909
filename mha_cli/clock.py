"""Time stamps: every record and folder name says UTC, in one format each."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_now_iso() -> str:
    """For `created` fields: 2026-11-28T01:32:44+00:00."""
    return utc_now().isoformat(timespec="seconds")


def folder_stamp(moment: datetime) -> str:
    """For folder names, sortable and free of ':' : 20261128T013244Z."""
    return moment.strftime("%Y%m%dT%H%M%SZ")
