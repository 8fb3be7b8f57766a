"""Archive scoring: one shard's scores (`score`) and the resumable, exactly-once run (`run`)."""

from __future__ import annotations
