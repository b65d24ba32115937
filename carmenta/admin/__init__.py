"""The operators' console at /admin: every table, the audit trail, the job queue."""
