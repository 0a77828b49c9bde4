"""Reminders that reach people: Prometheus metrics (``metrics``) and iCalendar events
(``calendar``), built from the overview of ``list`` and ``check`` (metadata only).

Neither carries a key nor a fingerprint: only who (SIRET, CFA name, OPCO) and when.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfakey.core.codes import KeyStatus, VerifyOutcome
from cfakey.expiry import in_date_range, local_date

if TYPE_CHECKING:
    from datetime import datetime

    from cfakey.core.keys import KeyRow, Overview

#: The file node_exporter's textfile collector reads in ``--textfile DIR``.
TEXTFILE_NAME = "cfakey.prom"

_METRIC_HELP = {
    "cfakey_key_expiry_timestamp_seconds": (
        "Échéance de la clé, en secondes Unix (comme x509_cert_not_after)."
    ),
    "cfakey_key_last_verification_timestamp_seconds": (
        "Dernière vérification de la clé auprès de l'OPCO, en secondes Unix."
    ),
    "cfakey_key_last_verification_refused": (
        "1 si l'OPCO a refusé la clé à sa dernière vérification, 0 sinon."
    ),
    "cfakey_keys": "Nombre de clés par statut.",
    "cfakey_metrics_generated_timestamp_seconds": "Heure d'écriture de ces métriques.",
}


def escape_label(value: str) -> str:
    """A label value in the text exposition format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def dated(row: KeyRow) -> bool:
    """Whether ``row`` has an expiry inside the range cfakey accepts (others are left out)."""
    return row.expires_at is not None and in_date_range(local_date(row.expires_at))


def _labels(row: KeyRow) -> str:
    pairs = (("siret", row.siret), ("cfa", row.cfa_name), ("opco", row.opco_id))
    return ",".join(f'{name}="{escape_label(value)}"' for name, value in pairs)


def _samples(view: Overview) -> dict[str, list[tuple[str, int]]]:
    """Each metric's samples, as (labels, value)."""
    samples: dict[str, list[tuple[str, int]]] = {name: [] for name in _METRIC_HELP}
    for row in view.rows:
        labels = _labels(row)
        if dated(row) and row.expires_at is not None:
            samples["cfakey_key_expiry_timestamp_seconds"].append(
                (labels, int(row.expires_at.timestamp()))
            )
        if row.verification is not None:
            refused = row.verification.outcome == VerifyOutcome.KEY_REFUSED.id
            samples["cfakey_key_last_verification_timestamp_seconds"].append(
                (labels, int(row.verification.at.timestamp()))
            )
            samples["cfakey_key_last_verification_refused"].append((labels, int(refused)))
    counts = dict.fromkeys(KeyStatus, 0)
    for row in view.rows:
        counts[row.status] += 1
    samples["cfakey_keys"] = [(f'status="{s.id}"', n) for s, n in counts.items()]
    return samples


def metrics_text(view: Overview, *, now: datetime) -> str:
    """The Prometheus text exposition format (0.0.4) of ``view``, no sample timestamps."""
    samples = _samples(view)
    samples["cfakey_metrics_generated_timestamp_seconds"] = [("", int(now.timestamp()))]
    lines: list[str] = []
    for name, help_text in _METRIC_HELP.items():
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(
            f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
            for labels, value in samples[name]
        )
    return "\n".join(lines) + "\n"
