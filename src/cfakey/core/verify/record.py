"""What a run leaves behind: journal entries, the OPCOs' end dates, the exit code, the order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from cfakey.core.codes import EXPIRY_UPDATED, ExpirySource, JournalAction, VerifyOutcome
from cfakey.core.verify.model import Outcome, VerifyJob, VerifyResult
from cfakey.errors import ExitCode
from cfakey.expiry import local_midnight
from cfakey.metadata import LastVerification

if TYPE_CHECKING:
    from cfakey.metadata import KeyRecord, Metadata


def record_results(
    metadata: Metadata,
    jobs: Sequence[VerifyJob],
    results: Sequence[VerifyResult],
    *,
    publish: Callable[[list[KeyRecord]], None] | None = None,
) -> None:
    """Journal every real verification, keep it with its key, and store the expiry dates
    the OPCOs gave, in one transaction.

    A result whose key never reached the API (:attr:`VerifyResult.sent` false: no address,
    no key, no OAuth client) verified nothing: it is reported, never journalled or kept.
    An inconclusive one (OPCO unavailable, rate-limited, unreadable answer, not supported)
    is journalled but never kept: the key keeps its last verdict (valid or refused), so an
    outage never wipes a refusal.
    Each entry is stamped with its result's ``checked_at``: the injected clock's instant.
    ``publish`` (a team store) receives the keys whose verification was kept, once
    committed, to put it in the engine's metadata for every teammate.
    """
    sources = {(job.siret, job.opco_id): job for job in jobs}
    with metadata.transaction():
        for result in results:
            job = sources.get((result.siret, result.opco_id))
            if not result.sent or job is None:
                continue
            if job.fingerprint is not None and VerifyOutcome.is_conclusive(result.outcome.value):
                _keep(metadata, job, job.fingerprint, result)
            metadata.log(
                JournalAction.VERIFIED.id,
                at=result.checked_at,
                siret=result.siret,
                opco_id=result.opco_id,
                old_fingerprint=job.fingerprint,
                detail=journal_detail(result),
            )
    if publish is not None:
        kept = (metadata.get_key(r.siret, r.opco_id) for r in results if r.sent)
        publish([record for record in kept if record is not None and record.verification])


def _keep(metadata: Metadata, job: VerifyJob, fingerprint: str, result: VerifyResult) -> None:
    """The result kept with the key verified, and its end date; never onto another key
    (one rotated in the meantime)."""
    verification = LastVerification(
        at=result.checked_at,
        outcome=result.outcome.value,
        http_status=result.http_status,
        opco_expiry=result.opco_expiry,
    )
    if not metadata.set_verification(job.siret, job.opco_id, fingerprint, verification):
        return
    stale = result.expiry_changed or job.recorded_source != ExpirySource.OPCO_API.id
    if result.opco_expiry is not None and stale:
        # The stored form of an OPCO's end-of-validity date: local midnight.
        moment = local_midnight(result.opco_expiry)
        metadata.set_expiry(job.siret, job.opco_id, moment, ExpirySource.OPCO_API.id)


def journal_detail(result: VerifyResult) -> str:
    """The journal line of a verification: its class, endpoint and reason (never the key)."""
    parts = [result.outcome.value]
    if result.endpoint:
        parts.append(result.endpoint)
    if result.http_status is not None:
        parts.append(f"HTTP {result.http_status}")
    if result.opco_expiry is not None:
        parts.append(f"fin de validité {result.opco_expiry.isoformat()}")
    if result.expiry_changed:
        parts.append(EXPIRY_UPDATED)
    return " ; ".join(parts) + (f" — {result.detail}" if result.detail else "")


def overall_exit_code(results: Iterable[VerifyResult]) -> ExitCode:
    """0 when every key is valid, else the code of the most urgent class present."""
    worst = max(
        (result.outcome for result in results),
        key=lambda outcome: outcome.rank,
        default=Outcome.VALID,
    )
    return worst.exit_code


def by_urgency(results: Iterable[VerifyResult]) -> list[VerifyResult]:
    """Problems first (most urgent first), then changed expiries, then the rest."""
    return sorted(
        results,
        key=lambda r: (
            -r.outcome.rank,
            not r.expiry_changed,
            r.cfa_name.casefold(),
            r.siret,
            r.opco_id,
        ),
    )
