"""Benchmark: ``cfakey verify --all --concurrency 32``, 1,100 keys, a fake OPCO answering in 100 ms.

100 CFAs × 11 OPCOs are stored in one batch in a temporary ``CFAKEY_HOME`` (encrypted
file store), every OPCO's ``api_url`` points at the fake OPCO on 127.0.0.1 (AKTO with
its vendor OAuth client), then the installed console script runs as a subprocess
``--rounds`` times; the median counts. The ideal is 1,100 × 0.1 s / 32 ≈ 3.4 s; the
target is at most 1.3 times that.

Run: ``/work/venv/bin/python bench/verify.py``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_opco import FakeOpco, running_fake_opco  # noqa: E402

from _timing import cfakey_executable  # noqa: E402
from cfakey.config import Config  # noqa: E402
from cfakey.context import AppContext  # noqa: E402
from cfakey.identifiers import with_check_digit  # noqa: E402
from cfakey.metadata import KeyRecord, Metadata  # noqa: E402
from cfakey.stores.base import entry_name, fingerprint, oauth_entry_name  # noqa: E402

DELAY = 0.1
TARGET_RATIO = 1.3


def sirets(count: int) -> list[str]:
    """``count`` distinct valid SIRETs (one SIREN each)."""
    return [
        with_check_digit(with_check_digit(f"{100000 + n:08d}") + f"{n % 10000:04d}")
        for n in range(count)
    ]


def seed(env: dict[str, str], server: FakeOpco, cfa_count: int) -> int:
    """Store ``cfa_count`` × 11 keys in one store session and one transaction."""
    context = AppContext(env=env)
    opcos = context.registry.opcos
    now = datetime.now(UTC).replace(microsecond=0)
    store = context.key_store()  # type: ignore[attr-defined,unused-ignore]
    count = 0
    with Metadata.open(context.paths) as metadata, store, store.batch(), metadata.transaction():
        for n, siret in enumerate(sirets(cfa_count)):
            metadata.add_cfa(siret, f"CFA banc {n:03d}", None)
            for opco in opcos:
                key = f"cle-{opco.id}-{siret}-0123456789abcdef"
                store.put(entry_name(siret, opco.id), key)
                metadata.put_key(
                    KeyRecord(
                        siret=siret,
                        opco_id=opco.id,
                        obtained_on=now.date(),
                        stored_at=now,
                        expires_at=None,
                        expiry_source="none",
                        fingerprint=fingerprint(key),
                        os_user="bench",
                        store=store.kind,
                    )
                )
                count += 1
        store.put(oauth_entry_name("akto"), server.state.oauth_client_secret)
    config = Config.load(context.paths.config_file)
    for opco in opcos:
        config.values[f"opco.{opco.id}.api_url"] = server.base_url("ok")
    config.values["opco.akto.oauth.token_url"] = server.token_url
    config.values["opco.akto.oauth.client_id"] = server.state.oauth_client_id
    config.save()
    return count


def main() -> int:
    """Seed once, run the CLI ``--rounds`` times, print the figures; non-zero when missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfas", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    command = [cfakey_executable(), "verify", "--all", "--concurrency", str(args.concurrency)]
    walls: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="cfakey-bench-") as home,
        running_fake_opco(delay=DELAY) as server,
    ):
        server.state.accept_any_key = True
        env = {
            **os.environ,
            "CFAKEY_HOME": home,
            "CFAKEY_STORE": "file",
            "CFAKEY_FILE_PASSWORD": "mot-de-passe-du-banc",
            "NO_COLOR": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        started = time.perf_counter()
        keys = seed(env, server, args.cfas)
        print(f"{keys} clés enregistrées en {time.perf_counter() - started:.2f} s")
        print(f"commande       : cfakey {' '.join(command[1:])}")
        for _ in range(args.rounds):
            before = len(server.requests)
            started = time.perf_counter()
            completed = subprocess.run(
                command, env=env, capture_output=True, text=True, check=False
            )
            walls.append(time.perf_counter() - started)
            received = server.requests[before:]
            api_calls = len([r for r in received if r.path != "/oauth/token"])
            print(
                f"tour {len(walls)} : {walls[-1]:.2f} s, code de sortie {completed.returncode} "
                f"(requêtes API : {api_calls}, jetons OAuth : {len(received) - api_calls})"
            )
            if completed.returncode != 0 or api_calls != keys:
                print(completed.stderr[-2000:])
                return 1
    ideal = keys * DELAY / args.concurrency
    wall = statistics.median(walls)
    print(f"temps réel     : médiane {wall:.2f} s (de {min(walls):.2f} à {max(walls):.2f} s)")
    print(f"idéal          : {keys} × {DELAY} s / {args.concurrency} = {ideal:.2f} s")
    print(f"rapport        : {wall / ideal:.2f} × l'idéal (cible ≤ {TARGET_RATIO})")
    return 0 if wall / ideal <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
