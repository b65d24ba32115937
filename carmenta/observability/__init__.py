"""Logs and metrics: one logging set-up for app and workers, request tracking, Prometheus."""
