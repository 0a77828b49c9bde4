"""Live check of stored keys against the OPCOs' API Convergence.

One module per stage, in the order a run goes through them:

- :mod:`.model`: outcomes (ASCII identifier, French label, exit code, urgency), jobs,
  settings, the :class:`Verdict` value and the results with their ``--json`` contract;
- :mod:`.plan`: what to check (keys, base URLs, the vendor's OAuth clients);
- :mod:`.http`: the read-only calls, bounded by ``exchange``;
- :mod:`.classification`: pure functions from a reply to a verdict or a next step;
- :mod:`.runner`: worker threads, the OAuth token cache, TLS set-up;
- :mod:`.record`: journal entries and end dates written after the run.

The names below are the package's interface; import them from here.
"""

from __future__ import annotations

from cfakey.core.verify.classification import (
    CFADOCK_PORTAL,
    Step,
    advice,
    next_step,
    token_lifetime,
)
from cfakey.core.verify.http import Channel
from cfakey.core.verify.model import (
    HEADER_DEFAULTS,
    RESULT_JSON_KEYS,
    OAuthClient,
    Outcome,
    Stop,
    Verdict,
    VerifyInterrupted,
    VerifyJob,
    VerifyRequest,
    VerifyResult,
    VerifySettings,
)
from cfakey.core.verify.plan import (
    LOCAL_HOSTS,
    base_url_for,
    check_base_url,
    check_header_value,
    check_selection,
    oauth_for,
    plan_jobs,
    select_keys,
    settings_from_config,
)
from cfakey.core.verify.record import (
    by_urgency,
    journal_detail,
    overall_exit_code,
    record_results,
)
from cfakey.core.verify.runner import (
    TlsPreparation,
    TokenCache,
    result_of,
    run_and_record,
    run_jobs,
    utc_now,
    verify_job,
)

__all__ = [
    "CFADOCK_PORTAL",
    "HEADER_DEFAULTS",
    "LOCAL_HOSTS",
    "RESULT_JSON_KEYS",
    "Channel",
    "OAuthClient",
    "Outcome",
    "Step",
    "Stop",
    "TlsPreparation",
    "TokenCache",
    "Verdict",
    "VerifyInterrupted",
    "VerifyJob",
    "VerifyRequest",
    "VerifyResult",
    "VerifySettings",
    "advice",
    "base_url_for",
    "by_urgency",
    "check_base_url",
    "check_header_value",
    "check_selection",
    "journal_detail",
    "next_step",
    "oauth_for",
    "overall_exit_code",
    "plan_jobs",
    "record_results",
    "result_of",
    "run_and_record",
    "run_jobs",
    "select_keys",
    "settings_from_config",
    "token_lifetime",
    "utc_now",
    "verify_job",
]
