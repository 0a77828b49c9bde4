"""Key-store speed: 1,100 keys put then read back, on the encrypted file and the Secret Service.

    python bench/stores.py [--keys 1100] [--skip-keyring] [--json]

The encrypted file runs with its real scrypt cost, so the total shows that the key is
derived once per process, not per entry (target: under 2 s for the 1,100 puts and gets
one by one). Each put there is a locked, durable write (two fsyncs); the batched run
shows the same work in one store session, as an import would do it. The Secret Service
is a real gnome-keyring on a private D-Bus session, started here and stopped after; it
reports milliseconds per operation. Nothing touches the user's own keyring or files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from cfakey.stores import file_store  # noqa: E402
from cfakey.stores.base import KeyStore, entry_name  # noqa: E402
from cfakey.stores.file_store import EncryptedFileStore  # noqa: E402

PASSWORD = "mot-de-passe-du-banc"  # noqa: S105 - a throwaway file
SIRET = "13002526500013"


def entries(count: int) -> list[tuple[str, str]]:
    """``count`` distinct entries with realistic 44-character keys."""
    return [(entry_name(SIRET, f"opco{n:04d}"), f"{n:04d}" + "k" * 40) for n in range(count)]


def timed(operation: Callable[[], None]) -> float:
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


@contextmanager
def counting_derivations() -> Iterator[list[int]]:
    """Count scrypt derivations while the block runs."""
    calls: list[int] = []
    original = file_store.derive_key

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    file_store.derive_key = counting  # type: ignore[assignment]
    try:
        yield calls
    finally:
        file_store.derive_key = original


def run_puts_and_gets(store: KeyStore, pairs: list[tuple[str, str]]) -> tuple[float, float]:
    def put_all() -> None:
        for name, secret in pairs:
            store.put(name, secret)

    def get_all() -> None:
        for name, secret in pairs:
            if store.get(name) != secret:
                raise SystemExit(f"wrong secret read back for {name}")

    return timed(put_all), timed(get_all)


def bench_file(count: int, workdir: Path) -> dict[str, Any]:
    pairs = entries(count)
    path = workdir / "one-by-one" / "keys.enc"
    with counting_derivations() as derivations:
        start = time.perf_counter()
        put_s, get_s = run_puts_and_gets(EncryptedFileStore(path, lambda *, new: PASSWORD), pairs)
        total_s = time.perf_counter() - start
        one_by_one = len(derivations)

    batched_path = workdir / "batched" / "keys.enc"
    with counting_derivations() as derivations:
        store = EncryptedFileStore(batched_path, lambda *, new: PASSWORD)
        start = time.perf_counter()
        with store.batch():
            for name, secret in pairs:
                store.put(name, secret)
        batch_put_s = time.perf_counter() - start
        batch_get_s = timed(lambda: [store.get(name) for name, _ in pairs] and None)
        batched_total_s = time.perf_counter() - start
        batched = len(derivations)
    return {
        "store": "file",
        "keys": count,
        "one_by_one": {
            "total_s": round(total_s, 3),
            "put_s": round(put_s, 3),
            "get_s": round(get_s, 3),
            "put_ms_per_op": round(put_s / count * 1000, 3),
            "get_ms_per_op": round(get_s / count * 1000, 3),
            "key_derivations": one_by_one,
        },
        "batched": {
            "total_s": round(batched_total_s, 3),
            "put_s": round(batch_put_s, 3),
            "get_s": round(batch_get_s, 3),
            "key_derivations": batched,
        },
        "file_bytes": path.stat().st_size,
    }


def bench_secret_service(count: int, workdir: Path) -> dict[str, Any]:
    import pytest  # the daemon helper reports problems through pytest
    from tests.secret_service import SecretServiceDaemon

    from cfakey.stores.keyring_store import KeyringStore

    daemon = SecretServiceDaemon(workdir / "secret-service")
    try:
        daemon.start()
    except (pytest.skip.Exception, pytest.fail.Exception) as error:
        return {"store": "keyring", "skipped": str(error)}
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = daemon.address
    os.environ.pop("PYTHON_KEYRING_BACKEND", None)
    os.environ["XDG_CONFIG_HOME"] = str(workdir / "config")  # no keyringrc.cfg of the user's
    try:
        store = KeyringStore()
        backend = store.backend_name
        pairs = entries(count)
        put_s, get_s = run_puts_and_gets(store, pairs)
        delete_s = timed(lambda: [store.delete(name) for name, _ in pairs] and None)
    finally:
        daemon.stop()
    return {
        "store": "keyring",
        "backend": backend,
        "keys": count,
        "put_ms_per_op": round(put_s / count * 1000, 2),
        "get_ms_per_op": round(get_s / count * 1000, 2),
        "delete_ms_per_op": round(delete_s / count * 1000, 2),
        "total_s": round(put_s + get_s + delete_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1100)
    parser.add_argument("--skip-keyring", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cfakey-bench-") as tmp:
        results = [bench_file(args.keys, Path(tmp))]
        if not args.skip_keyring:
            results.append(bench_secret_service(args.keys, Path(tmp)))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    report(results)


def report(results: list[dict[str, Any]]) -> None:
    """The figures in French, one line each, with the 2-second target checked."""
    file_result = results[0]
    for label, run in (("une à une", "one_by_one"), ("en une session", "batched")):
        figures = file_result[run]
        verdict = "atteint" if figures["total_s"] < 2 else "manqué"
        print(
            f"Fichier chiffré, {file_result['keys']} clés {label} : {figures['total_s']} s "
            f"(écriture {figures['put_s']} s, lecture {figures['get_s']} s, "
            f"{figures['key_derivations']} dérivation(s) scrypt) ; objectif < 2 s {verdict}."
        )
    for result in results[1:]:
        if "skipped" in result:
            print(f"Secret Service : non mesuré ({result['skipped']}).")
            continue
        print(
            f"Secret Service ({result['backend']}), {result['keys']} clés : "
            f"{result['put_ms_per_op']} ms par écriture, {result['get_ms_per_op']} ms par lecture, "
            f"{result['delete_ms_per_op']} ms par suppression ({result['total_s']} s en tout)."
        )


if __name__ == "__main__":
    main()
