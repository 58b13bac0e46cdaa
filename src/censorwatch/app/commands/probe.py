"""``censorwatch probe``: measure URLs, a test list or a platform profile; write OONI JSONL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

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
    workarounds: Annotated[
        bool | None,
        typer.Option(
            "--workarounds/--no-workarounds",
            help="After a block, try the ways around it (default: the configuration's "
            "[workarounds] enabled, true).",
        ),
    ] = None,
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
    workaround_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds per way around a block (connect to page).")
    ] = budget.WORKAROUND_TIMEOUT,
    workarounds_deadline: Annotated[
        float, typer.Option(min=0.1, help="Seconds for every way around a block of one URL.")
    ] = budget.WORKAROUNDS_DEADLINE,
    submit: Annotated[
        str | None,
        typer.Option("--submit", help="Collector URL; measurements wait in --queue until sent."),
    ] = None,
    queue: Annotated[
        Path | None,
        typer.Option(
            "--queue",
            help="Local queue of measurements not yet submitted [default: STATE-DIR/queue].",
        ),
    ] = None,
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
    locate: Annotated[
        bool,
        typer.Option(
            "--locate",
            help="Also find the hop where the censor sits: resend the offending packet with "
            "rising TTLs beside an innocuous one (docs/probe.md; Linux only).",
        ),
    ] = False,
    no_defaults: Annotated[
        bool,
        typer.Option(
            "--no-defaults",
            help="Contact only what options and environment name (no built-in resolvers, "
            "controls, STUN servers or check-in).",
        ),
    ] = False,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Run unattended: a cycle every DURATION (90s, 15m, 1h, 1h30m), with jitter, "
            "a lock, the queue flushed each cycle and the state folder capped.",
        ),
    ] = None,
    jitter: Annotated[
        str | None,
        typer.Option(
            "--jitter",
            help="Random delay added to each wait, at most DURATION "
            "[default: a tenth of --every, at most 5m].",
        ),
    ] = None,
    cycles: Annotated[
        int | None,
        typer.Option("--cycles", min=1, help="With --every: stop after N cycles."),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Consent, lock, queue, log and unattended measurements "
            "[default: $STATE_DIRECTORY, else $XDG_STATE_HOME/censorwatch/probe].",
            file_okay=False,
        ),
    ] = None,
    max_disk: Annotated[
        str,
        typer.Option(
            "--max-disk",
            help="With --every: cap on the measurements and queue in STATE-DIR (500K, 256M, 2G).",
        ),
    ] = "256M",
    log_max_bytes: Annotated[
        str, typer.Option("--log-max-bytes", help="With --every: size of STATE-DIR/probe.log.")
    ] = "1M",
    log_backups: Annotated[
        int, typer.Option("--log-backups", min=0, max=100, help="Rotated logs kept.")
    ] = 3,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="I have read the risks (docs/probe.md) and agree to run the probe; "
            "recorded in STATE-DIR for later runs.",
        ),
    ] = False,
) -> None:
    """Measure URLs step by step (DNS, TCP, TLS, HTTP, throughput) and compare with a control."""
    from rich.console import Console

    from censorwatch.probe import control_client
    from censorwatch.probe.config import ProbeConfig, default_state_dir
    from censorwatch.probe.runner import run_with_progress
    from censorwatch.targets import Target, check_url, profiles, testlists

    err = Console(stderr=True)
    schedule, limits = _unattended_options(every, jitter, cycles, max_disk, log_max_bytes, output)
    state = state_dir or default_state_dir()
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
        workarounds=workarounds,
        budgets=budget.Budgets(
            connect_timeout=connect_timeout,
            tls_timeout=tls_timeout,
            dns_timeout=dns_timeout,
            http_timeout=http_timeout,
            http_max_body=max_body,
            url_deadline=url_deadline,
            workaround_timeout=workaround_timeout,
            workarounds_deadline=workarounds_deadline,
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
    if locate:
        from censorwatch.probe.locate import unavailable

        cfg.locate_censor = True
        if (why_not := unavailable()) is not None:
            err.print(f"[yellow]note:[/] --locate cannot run here: {why_not}", highlight=False)
    if cfg.cafile and not Path(cfg.cafile).is_file():
        raise typer.BadParameter(f"{cfg.cafile} does not exist", param_hint="--ca")
    if not cfg.control_url:
        err.print(
            "[yellow]note:[/] no control service (--control); measurements will have "
            "control_failure set and no blocking verdict",
            highlight=False,
        )

    if not cfg.testbed:  # an emulated network puts nobody at risk: nothing to consent to
        _ensure_consent(state, yes, err)
    queue = queue or state / "queue"
    if schedule is not None:
        from censorwatch.probe import unattended

        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        unattended.setup_logging(state, limits[1], log_backups)
        job = unattended.Unattended(
            targets,
            cfg,
            state,
            schedule,
            submit=submit,
            queue_dir=queue,
            collector_ca=collector_ca,
            concurrency=concurrency,
            max_disk=limits[0],
        )
        unattended.run_unattended(job)
        return
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


def _unattended_options(
    every: str | None,
    jitter: str | None,
    cycles: int | None,
    max_disk: str,
    log_max_bytes: str,
    output: Path | None,
) -> tuple[Any, tuple[int, int]]:
    """The schedule (None for a single run) and the byte limits (disk cap, log size)."""
    from censorwatch.probe.unattended import Schedule, default_jitter, parse_duration, parse_size

    limits = []
    for value, hint in ((max_disk, "--max-disk"), (log_max_bytes, "--log-max-bytes")):
        try:
            limits.append(parse_size(value))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=hint) from None
    if every is None:
        for given, hint in ((jitter, "--jitter"), (cycles, "--cycles")):
            if given is not None:
                raise typer.BadParameter("only with --every", param_hint=hint)
        return None, (limits[0], limits[1])
    if output is not None:
        raise typer.BadParameter(
            "with --every each cycle writes its own file in STATE-DIR/measurements "
            "(kept within --max-disk); --output is for a single run",
            param_hint="--output",
        )
    try:
        seconds = parse_duration(every)
        spread = default_jitter(seconds) if jitter is None else parse_duration(jitter)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--every/--jitter") from None
    if seconds < 1:
        raise typer.BadParameter("at least one second", param_hint="--every")
    if spread > seconds:
        raise typer.BadParameter("cannot exceed --every", param_hint="--jitter")
    return Schedule(seconds, spread, cycles), (limits[0], limits[1])


def _ensure_consent(state: Path, yes: bool, err: Any) -> None:
    """The risks explained and accepted once (docs/probe.md, "Risks"), or exit 3."""
    from censorwatch.probe import consent

    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if interactive or yes:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        consent.ensure(
            state,
            yes=yes,
            interactive=interactive,
            show=lambda text: err.print(text, highlight=False, markup=False, soft_wrap=True),
            ask=lambda question: typer.prompt(question, err=True),
        )
    except consent.ConsentRefused as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(3) from None
    except OSError as exc:
        err.print(f"[red]error:[/] cannot record consent in {state}: {exc}", highlight=False)
        raise typer.Exit(3) from None
