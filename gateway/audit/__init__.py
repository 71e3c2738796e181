"""The audit trail: one record in the durable log per command or change that alters what the gateway reports or
does (gateway.audit.trail)."""

from gateway.audit.trail import Actor, AuditRecord, audit, entries, mask

__all__ = ["Actor", "AuditRecord", "audit", "entries", "mask"]
