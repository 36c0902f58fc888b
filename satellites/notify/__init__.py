"""Notify: webhooks, alerts, email, log forwarding."""

from satellites.notify import call_webhook, forward_logs, send_alert, send_email  # noqa: F401
