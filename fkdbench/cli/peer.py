"""``fkdbench peer`` (fkdbench.peers.score.score_peer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fkdbench.cli.options import RUNS_DIR, QuietOption, RunsDirOption, choices, value
from fkdbench.cli.output import user_errors
from fkdbench.peers import DEFAULT_PEER, PEERS, PeerError
from fkdbench.peers.score import score_peer

Peer = choices("Peer", PEERS)


def peer(
    data_dir: Annotated[
        Path, typer.Argument(help="Prepared data folder (fkdbench prepare): its test split.")
    ],
    name: Annotated[Peer, typer.Option(help="The off-the-shelf peer.")] = Peer[DEFAULT_PEER],
    runs_dir: RunsDirOption = RUNS_DIR,
    quiet: QuietOption = False,
) -> None:
    """Score an off-the-shelf peer on a data set's test split (<runs-dir>/peers/<name>.json)."""
    with user_errors():
        result = score_peer(value(name), data_dir=data_dir, runs_dir=runs_dir, quiet=quiet)
        if result.error:
            # The record is written (the report says why in the peer's row); the job failed.
            raise PeerError(result.line())
    typer.echo(result.line())
