"""``censorwatch probe``: measure URLs, a test list or a platform profile; write OONI JSONL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from censorwatch.probe import budget

CA_HELP = "Extra trust anchor (PEM). In testbed mode it is the only one. (env CENSORWATCH_CA)"


def probe(
    url: Annotated[
        list[str] | None, typer.Option("--url", help="URL to measure (repeatable).")
    ] = None,
    list_file: Annotated[
        Path | None,
        typer.Option("--list", help="Citizen Lab test-list CSV.", exists=True, dir_okay=False),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="Platform profile name or TOML path (e.g. x)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="JSONL file to append to (default: stdout)."),
    ] = None,
    control: Annotated[
        str | None,
        typer.Option("--control", help="Control service URL. (env CENSORWATCH_CONTROL)"),
    ] = None,
    resolver_udp: Annotated[
        str | None,
        typer.Option(
            "--resolver-udp",
            help="Public UDP resolver HOST[:PORT]. (env CENSORWATCH_UDP_RESOLVER)",
        ),
    ] = None,
    doh: Annotated[
        str | None,
        typer.Option("--doh", help="DNS-over-HTTPS URL. (env CENSORWATCH_DOH_URL)"),
    ] = None,
    system_resolver: Annotated[
        str | None,
        typer.Option(
            "--system-resolver",
            help="HOST[:PORT] instead of the first nameserver of /etc/resolv.conf.",
        ),
    ] = None,
    ca: Annotated[Path | None, typer.Option("--ca", help=CA_HELP, dir_okay=False)] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64)] = 4,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Probe signing key (default: $CENSORWATCH_PROBE_KEY or "
            "the one `censorwatch keys init` made, if any).",
            dir_okay=False,
        ),
    ] = None,
    throughput: Annotated[
        bool, typer.Option("--throughput", help="Measure throughput for every URL.")
    ] = False,
    quic: Annotated[
        bool, typer.Option("--quic/--no-quic", help="QUIC handshakes beside TLS over TCP.")
    ] = True,
    reference_url: Annotated[
        str | None,
        typer.Option(
            "--reference-url",
            help="Reference object for throughput. (env CENSORWATCH_REFERENCE_URL)",
        ),
    ] = None,
    asn: Annotated[
        str | None,
        typer.Option("--asn", help="Probe network, AS<n>. (env CENSORWATCH_PROBE_ASN)"),
    ] = None,
    cc: Annotated[
        str | None,
        typer.Option("--cc", help="Probe country code. (env CENSORWATCH_PROBE_CC)"),
    ] = None,
    network_name: Annotated[str | None, typer.Option("--network-name")] = None,
    asn_db: Annotated[
        Path | None,
        typer.Option(
            "--asn-db",
            help="IP-to-ASN database or address plan. (env CENSORWATCH_ASN_DB)",
            dir_okay=False,
        ),
    ] = None,
    testbed: Annotated[
        str | None,
        typer.Option(
            "--testbed",
            help="Testbed id: trust only --ca and allow a control in "
            "reserved address space. (env CENSORWATCH_TESTBED)",
        ),
    ] = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds per TCP connect.")] = (
        budget.CONNECT_TIMEOUT
    ),
    tls_timeout: Annotated[float, typer.Option(help="Seconds per TLS handshake.")] = (
        budget.TLS_TIMEOUT
    ),
    dns_timeout: Annotated[float, typer.Option(help="Seconds per DNS query.")] = budget.DNS_TIMEOUT,
    http_timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.")] = (
        budget.HTTP_TIMEOUT
    ),
    max_body: Annotated[int, typer.Option(help="Body bytes kept per response.")] = (
        budget.HTTP_MAX_BODY
    ),
    url_deadline: Annotated[float, typer.Option(help="Seconds for everything about one URL.")] = (
        budget.URL_DEADLINE
    ),
    submit: Annotated[
        str | None,
        typer.Option("--submit", help="Collector URL; measurements wait in --queue until sent."),
    ] = None,
    queue: Annotated[
        Path, typer.Option("--queue", help="Local queue of measurements not yet submitted.")
    ] = Path("censorwatch-queue"),
    collector_ca: Annotated[
        Path | None,
        typer.Option("--collector-ca", help="Trust anchor (PEM) for the collector's TLS."),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Configuration file overriding the built-in defaults "
            "[default: $XDG_CONFIG_HOME/censorwatch/probe.toml if present].",
            dir_okay=False,
        ),
    ] = None,
    no_defaults: Annotated[
        bool,
        typer.Option(
            "--no-defaults",
            help="Contact only what options and environment name (no built-in resolvers, "
            "controls, STUN servers or check-in).",
        ),
    ] = False,
) -> None:
    """Measure URLs step by step (DNS, TCP, TLS, HTTP, throughput) and compare with a control."""
    from rich.console import Console

    from censorwatch.probe import control_client
    from censorwatch.probe.config import ProbeConfig
    from censorwatch.probe.runner import run_with_progress
    from censorwatch.targets import Target, check_url, profiles, testlists

    err = Console(stderr=True)
    targets: list[Target] = []
    for u in url or []:
        problem = check_url(u)
        if problem:
            raise typer.BadParameter(f"{u!r}: {problem}", param_hint="--url")
        targets.append(Target(u.strip(), source="url"))
    if list_file is not None:
        targets += testlists.load(
            list_file,
            warn=lambda m: err.print(f"[yellow]warning:[/] {m}", highlight=False),
        )
    if profile is not None:
        try:
            targets += profiles.load(profile)
        except (ValueError, OSError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--profile") from exc

    from censorwatch.probe import defaults as probe_defaults

    try:
        defaults = None if no_defaults else probe_defaults.load(config_file)
    except probe_defaults.ConfigFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc
    cfg = ProbeConfig.from_env(
        defaults=defaults,
        system_resolver_opt=system_resolver,
        udp_resolver=resolver_udp,
        doh_url=doh,
        control_url=control,
        cafile=str(ca) if ca else None,
        testbed=testbed,
        probe_asn=asn,
        probe_cc=cc,
        probe_network_name=network_name,
        reference_url=reference_url,
        asn_db=str(asn_db) if asn_db else None,
        throughput=throughput,
        quic=quic,
        budgets=budget.Budgets(
            connect_timeout=connect_timeout,
            tls_timeout=tls_timeout,
            dns_timeout=dns_timeout,
            http_timeout=http_timeout,
            http_max_body=max_body,
            url_deadline=url_deadline,
        ),
    )
    if not targets and not cfg.checkin_urls:
        raise typer.BadParameter(
            "nothing to measure: give --url, --list or --profile (or use the defaults' check-in)"
        )
    if cfg.control_url and control_client.is_reserved_host(cfg.control_url) and not cfg.testbed:
        raise typer.BadParameter(
            f"{cfg.control_url} is in a private or reserved range; a control must be a public "
            "service (use --testbed / CENSORWATCH_TESTBED inside an emulated network)",
            param_hint="--control",
        )
    from censorwatch.signing.keys import KeyFileError, default_probe_key_path, load_private_key

    key_path = key or default_probe_key_path()
    if key is not None or key_path.exists():
        try:
            cfg.signing_key = load_private_key(key_path)
        except KeyFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--key") from exc
    if cfg.cafile and not Path(cfg.cafile).is_file():
        raise typer.BadParameter(f"{cfg.cafile} does not exist", param_hint="--ca")
    if not cfg.control_url:
        err.print(
            "[yellow]note:[/] no control service (--control); measurements will have "
            "control_failure set and no blocking verdict",
            highlight=False,
        )

    out = output.open("a", encoding="utf-8") if output else sys.stdout
    sink = out
    if submit is not None:
        from censorwatch.probe.submit import QueueingWriter, SubmissionQueue

        sink = QueueingWriter(out, SubmissionQueue(queue))
    try:
        summary = run_with_progress(targets, cfg, sink, concurrency=concurrency)
    finally:
        if output:
            out.close()
    if submit is not None:
        sent = SubmissionQueue(queue).flush(submit, ca=collector_ca)
        err.print(
            f"submitted {len(sent.sent)} to {submit}; {sent.queued} waiting in {queue}"
            + (f" ({sent.error})" if sent.error else "")
            + (f"; {sent.rejected} refused (kept in {queue}/rejected)" if sent.rejected else ""),
            highlight=False,
        )
    blocked = ", ".join(f"{k}: {v}" for k, v in sorted(summary.blocking.items())) or "none"
    err.print(
        f"{summary.measured} measured in {summary.seconds:.1f}s; accessible {summary.accessible}; "
        f"blocking {blocked}; control failures {summary.control_failures}"
        + (f"; written to {output}" if output else ""),
        highlight=False,
        soft_wrap=True,
    )
