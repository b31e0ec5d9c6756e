"""CLI verbs over FeedbackService: `feedback` (a platform's verdict on a match it was
served) and `review` (a list manager's queue of flagged and reported entries, and the
decisions on them).

Both print JSON lines on stdout and end with an exit status scripts can rely on:
0 done, 1 any other failure (connection, permission, server), 2 usage, 3 not found
(a match never served to this key, an entry or list unknown), 4 rate limited.
"""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click
import grpc
from google.protobuf import json_format

from hashmatch.channel import Credentials, connection_options, rpc_failure
from hashmatch.cli import emit, warn
from hashmatch.feedback import REASONS, VERDICTS, FeedbackClient

EXIT_FAILED, EXIT_NOT_FOUND, EXIT_RATE_LIMITED = 1, 3, 4
SERVER_OPTION = click.option(
    "--server", required=True, metavar="HOST:PORT", help="FeedbackService address."
)


def _exit_for(server: str, exc: grpc.RpcError) -> NoReturn:
    """Say what failed on stderr and exit with its status."""
    warn(rpc_failure(server, exc))
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if code == grpc.StatusCode.NOT_FOUND:
        sys.exit(EXIT_NOT_FOUND)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        sys.exit(EXIT_RATE_LIMITED)
    sys.exit(EXIT_FAILED)


@click.command("feedback")
@SERVER_OPTION
@connection_options
@click.argument("match_id")
@click.argument("verdict", type=click.Choice(VERDICTS))
@click.option(
    "--reason", type=click.Choice(sorted(REASONS)), default=None, help="Why (a fixed code)."
)
@click.option("--list", "list_name", default="", help="Only the match served from this list.")
def feedback_command(
    server: str,
    credentials: Credentials,
    match_id: str,
    verdict: str,
    reason: str | None,
    list_name: str,
) -> None:
    """Report VERDICT on a match the server answered this key with (its MATCH_ID).

    Prints {"match_id", "verdict", "reason", "lists"}: the lists the report was
    recorded for. Exit 3 if the server never served this key that match."""
    try:
        with FeedbackClient(server, credentials=credentials) as client:
            lists = client.report(match_id, verdict, reason or "", list_name)
    except grpc.RpcError as exc:
        _exit_for(server, exc)
    emit({"match_id": match_id, "verdict": verdict, "reason": reason or "", "lists": lists})


@click.command("review")
@SERVER_OPTION
@connection_options
@click.option("--list", "list_name", default="", help="One list (default: every list you manage).")
@click.option("--confirm", "confirm", metavar="MATCH_ID", help="It matches again.")
@click.option("--remove", "remove", metavar="MATCH_ID", help="It leaves the list.")
@click.option("--keep", "keep", metavar="MATCH_ID", help="It stays quarantined, reviewed.")
def review_command(
    server: str,
    credentials: Credentials,
    list_name: str,
    confirm: str | None,
    remove: str | None,
    keep: str | None,
) -> None:
    """List the entries flagged for anomalous matching or reported by platforms, one
    JSON object a line with the evidence; or decide on one (--confirm, --remove or
    --keep MATCH_ID, with --list)."""
    decisions = [(d, m) for d, m in (("confirm", confirm), ("remove", remove), ("keep", keep)) if m]
    if len(decisions) > 1:
        raise click.UsageError("one decision at a time: --confirm, --remove or --keep")
    if decisions and not list_name:
        raise click.UsageError("a decision needs --list NAME")
    try:
        with FeedbackClient(server, credentials=credentials) as client:
            if decisions:
                decision, match_id = decisions[0]
                state = client.decide(list_name, match_id, decision)
                emit(
                    {"list": list_name, "match_id": match_id, "decision": decision, "state": state}
                )
                return
            for entry in client.review(list_name):
                click.echo(
                    json.dumps(
                        json_format.MessageToDict(
                            entry,
                            preserving_proto_field_name=True,
                            always_print_fields_with_no_presence=True,
                        )
                    )
                )
    except grpc.RpcError as exc:
        _exit_for(server, exc)
