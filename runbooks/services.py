"""From the inventory to DNS, tickets and the reports directory.

Secrets are resolved at the last moment into masked values; providers reveal them only when a
request is signed or a login is made.
"""

from __future__ import annotations

import os
from pathlib import Path

from providers.dns_base import BaseDnsProvider
from providers.ovh_dns import OvhDns
from providers.rfc2136_dns import Rfc2136Dns
from providers.tickets import (
    FileTicketBackend,
    SmtpTicketBackend,
    TicketBackend,
    WebhookTicketBackend,
)
from runbooks.inventory import FileTickets, Site, SmtpTickets
from runbooks.inventory import OvhDns as OvhDnsConfig

REPORTS_ENV = "DRP_REPORTS_DIR"


def reports_dir(site: Site) -> Path:
    """Where reports (and the ticket ledger) go: $DRP_REPORTS_DIR, else `reports/` beside the
    inventory file (the current directory for an inventory not read from a file)."""
    if os.environ.get(REPORTS_ENV):
        return Path(os.environ[REPORTS_ENV]).resolve()
    base = site.source.parent if site.source is not None else Path.cwd()
    return (base / "reports").resolve()


def dns_provider(site: Site) -> BaseDnsProvider:
    dns = site.dns
    if isinstance(dns, OvhDnsConfig):
        return OvhDns(
            endpoint=dns.endpoint,
            endpoint_url=str(dns.url).rstrip("/") if dns.url else None,
            application_key=site.resolve_secret(dns.application_key),
            application_secret=site.resolve_secret(dns.application_secret),
            consumer_key=site.resolve_secret(dns.consumer_key),
        )
    return Rfc2136Dns(
        primary=str(dns.server),
        port=dns.port,
        key_name=dns.tsig_key_name,
        key_algorithm=dns.tsig_algorithm,
        key_secret=site.resolve_secret(dns.tsig_secret),
    )


def ticket_backends(site: Site) -> list[TicketBackend]:
    ledger = reports_dir(site) / "tickets-sent.jsonl"
    backends: list[TicketBackend] = []
    for index, config in enumerate(site.tickets):
        name = f"{config.type}-{index + 1}"
        if isinstance(config, FileTickets):
            backends.append(FileTicketBackend(name, path=Path(config.path)))
        elif isinstance(config, SmtpTickets):
            backends.append(
                SmtpTicketBackend(
                    name,
                    host=config.host,
                    port=config.port,
                    sender=config.sender,
                    recipients=list(config.recipients),
                    ledger=ledger,
                    starttls=config.starttls,
                    user=config.user,
                    password=site.resolve_secret(config.password) if config.password else None,
                    timeout=config.timeout_seconds,
                )
            )
        else:
            headers = {
                key: site.resolve_secret(value) if not isinstance(value, str) else value
                for key, value in config.headers.items()
            }
            backends.append(
                WebhookTicketBackend(
                    name,
                    url=(
                        config.url
                        if isinstance(config.url, str)
                        else site.resolve_secret(config.url)
                    ),
                    ledger=ledger,
                    headers=headers,
                    timeout=config.timeout_seconds,
                )
            )
    return backends
