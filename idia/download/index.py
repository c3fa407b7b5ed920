"""The download index (schemas.DOWNLOAD_INDEX) and report, built from img2dataset's per-shard outputs + the guard's refusals.

Every requested row ends in exactly one state: success (with shard and key) or failed with a short reason code
(`refused_<category>`, `http_404`, `timeout`, `opt_out`, `not_an_image`, `sha256_mismatch`, ...). Rows are joined
to img2dataset's results on the carried (identity_id, source_id), never on position.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pandas as pd
import pyarrow as pa

from idia.core.stats import AccountingError, check_sum
from idia.download.image_checks import ERR_BAD_BBOX, ERR_BBOX, ERR_NOT_IMAGE, ERR_TOO_MANY_PIXELS, ERR_TRUNCATED
from idia.download.opener import BODY_TOO_LARGE, REFUSAL_PREFIX
from idia.download.robots import ROBOTS_DISALLOWED, ROBOTS_UNAVAILABLE
from schemas import DOWNLOAD_INDEX
from schemas.validate import conform

#: Rows of a round whose shard never finished (killed run, shard failed after retries): rerun to resume.
NOT_DOWNLOADED = "not_downloaded"

_HTTP = re.compile(r"http error (\d{3})")
_REFUSED = re.compile(re.escape(REFUSAL_PREFIX) + r"\s*([a-z_]+)")

# (substring of the lowercased message, reason code), first match wins.
_PATTERNS: list[tuple[str, str]] = [
    (ROBOTS_DISALLOWED, "robots_disallowed"),
    (ROBOTS_UNAVAILABLE, "robots_unavailable"),
    ("x-robots-tag", "opt_out"),
    ("unknown url type", "refused_scheme"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    (ERR_TOO_MANY_PIXELS, "too_many_pixels"),
    ("image area too large", "too_many_pixels"),
    (ERR_TRUNCATED, "truncated_image"),
    (ERR_NOT_IMAGE, "not_an_image"),
    ("image decoding error", "not_an_image"),
    (ERR_BBOX, "bbox_outside_image"),
    (ERR_BAD_BBOX, "bad_bbox"),
    ("image too small", "image_too_small"),
    ("aspect ratio too large", "aspect_ratio_too_large"),
    ("hash mismatch", "sha256_mismatch"),
    ("name or service not known", "dns_error"),
    ("nodename nor servname", "dns_error"),
    ("temporary failure in name resolution", "dns_error"),
    ("no address associated", "dns_error"),
    ("getaddrinfo", "dns_error"),
    ("connection refused", "connection_refused"),
    ("certificate", "tls_error"),
    ("ssl", "tls_error"),
    ("remote end closed", "connection_error"),
    ("connection reset", "connection_error"),
    ("incompleteread", "connection_error"),
    ("incomplete read", "connection_error"),
    ("no host given", "refused_no_host"),
    (BODY_TOO_LARGE, "body_too_large"),
]


def reason_code(message: str | None, status: str | None = None) -> str | None:
    """A short, stable reason code for one of img2dataset's error messages (None for success)."""
    if status == "success":
        return None
    if not message:
        return "download_error" if status == "failed_to_download" else "resize_error" if status else "unknown"
    m = message.lower()
    hit = _REFUSED.search(m)
    if hit:
        return f"refused_{hit.group(1)}"
    hit = _HTTP.search(m)
    if hit:
        return f"http_{hit.group(1)}"
    for needle, code in _PATTERNS:
        if needle in m:
            return code
    return "download_error" if status == "failed_to_download" else "resize_error"


def round_states(rows: pa.Table, outputs: pa.Table | None) -> pd.DataFrame:
    """One round: its rows (identity_id, source_id, url, prefilter_reason) joined with img2dataset's results
    (identity_id, source_id, status, error_message, key, shard, sha256). -> identity_id, source_id, url, status,
    reason, shard, key, got_sha256, message."""
    df = rows.select(["identity_id", "source_id", "url", "prefilter_reason"]).to_pandas()
    if outputs is not None and outputs.num_rows:
        out = outputs.to_pandas()
        dup = out.duplicated(["identity_id", "source_id"])
        if dup.any():
            raise AccountingError(f"img2dataset returned {int(dup.sum())} row(s) twice (identity_id, source_id)")
        out = out.rename(columns={"status": "i2d_status", "sha256": "got_sha256", "error_message": "message"})
        df = df.merge(
            out[["identity_id", "source_id", "i2d_status", "message", "key", "shard", "got_sha256"]],
            on=["identity_id", "source_id"],
            how="left",
            validate="one_to_one",
        )
    else:
        for c in ("i2d_status", "message", "key", "shard", "got_sha256"):
            df[c] = None
    refused = df["prefilter_reason"].notna()
    done = df["i2d_status"].notna()
    if (refused & done).any():
        raise AccountingError("a row refused before download also has a download result")
    ok = df["i2d_status"] == "success"
    df["status"] = ok.map({True: "success", False: "failed"})
    df["reason"] = [
        None
        if s == "success"
        else f"refused_{p}"
        if isinstance(p, str)
        else reason_code(m, s)
        if isinstance(s, str)
        else NOT_DOWNLOADED
        for p, s, m in zip(df["prefilter_reason"], df["i2d_status"], df["message"])
    ]
    df.loc[refused, "message"] = "refused before download: " + df.loc[refused, "prefilter_reason"]
    df.loc[~ok, ["shard", "key"]] = None
    return df[["identity_id", "source_id", "url", "status", "reason", "shard", "key", "got_sha256", "message"]]


def build_index(requests: pa.Table, rounds: list[pd.DataFrame]) -> tuple[pa.Table, pd.DataFrame]:
    """The latest state of every requested row across rounds (a retry round overrides earlier ones), with the
    expected sha256 checked on successes. -> (DOWNLOAD_INDEX table, full frame incl. error messages)."""
    req = requests.select(["identity_id", "source_id", "url", "sha256"]).to_pandas()
    if req.duplicated(["identity_id", "source_id"]).any():
        raise AccountingError("requests hold a repeated (identity_id, source_id)")
    if rounds:
        latest = pd.concat(rounds, ignore_index=True).drop_duplicates(["identity_id", "source_id"], keep="last")
        df = req.merge(latest.drop(columns="url"), on=["identity_id", "source_id"], how="left", validate="one_to_one")
    else:
        df = req.assign(status=None, reason=None, shard=None, key=None, got_sha256=None, message=None)
    never = df["status"].isna()
    df.loc[never, "status"] = "failed"
    df.loc[never, "reason"] = NOT_DOWNLOADED
    # sha256 of the bytes as downloaded (img2dataset computes it before resizing/cropping).
    mismatch = pd.Series(
        [
            isinstance(want, str) and status == "success" and (not isinstance(got, str) or got.lower() != want.lower())
            for want, got, status in zip(df["sha256"], df["got_sha256"], df["status"])
        ],
        index=df.index,
        dtype=bool,
    )
    df.loc[mismatch, "message"] = (
        "sha256 " + df.loc[mismatch, "got_sha256"].astype(str) + " != expected " + df.loc[mismatch, "sha256"]
    )
    df.loc[mismatch, ["status", "reason", "shard", "key"]] = ["failed", "sha256_mismatch", None, None]
    df = df.sort_values(["identity_id", "source_id"], kind="mergesort").reset_index(drop=True)
    table = pa.Table.from_pandas(df[DOWNLOAD_INDEX.names], preserve_index=False)
    return conform(table, DOWNLOAD_INDEX, "download index"), df


def summarize(df: pd.DataFrame, identity_ids: list[str] | None = None) -> dict:
    """Totals and per-identity requested / downloaded / failed by reason; asserts requested = downloaded + failed."""
    per: dict[str, dict] = {}
    for ident in identity_ids or []:
        per[ident] = {"requested": 0, "downloaded": 0, "failed": 0, "failed_by_reason": {}}
    reasons: dict[str, Counter] = defaultdict(Counter)
    for ident, status, reason in zip(df["identity_id"], df["status"], df["reason"]):
        e = per.setdefault(ident, {"requested": 0, "downloaded": 0, "failed": 0, "failed_by_reason": {}})
        e["requested"] += 1
        if status == "success":
            e["downloaded"] += 1
        else:
            e["failed"] += 1
            reasons[ident][reason] += 1
    for ident, e in per.items():
        e["failed_by_reason"] = dict(sorted(reasons[ident].items()))
        check_sum(e["requested"], {"downloaded": e["downloaded"], "failed": e["failed"]}, f"identity {ident}")
        check_sum(e["failed"], e["failed_by_reason"], f"identity {ident} failures by reason")
    total_reasons = Counter()
    for c in reasons.values():
        total_reasons.update(c)
    totals = {
        "requested": int(len(df)),
        "downloaded": int((df["status"] == "success").sum()),
        "failed": int((df["status"] != "success").sum()),
        "failed_by_reason": dict(sorted(total_reasons.items())),
        "identities": len(per),
        "identities_with_images": sum(1 for e in per.values() if e["downloaded"] > 0),
    }
    check_sum(totals["requested"], {"downloaded": totals["downloaded"], "failed": totals["failed"]}, "all rows")
    check_sum(totals["requested"], {k: v["requested"] for k, v in per.items()}, "rows per identity")
    examples: dict[str, list[str]] = {}
    for reason, msg in zip(df["reason"], df["message"]):
        if isinstance(reason, str) and isinstance(msg, str):
            lst = examples.setdefault(reason, [])
            if len(lst) < 3 and msg not in lst:
                lst.append(msg)
    return {
        "totals": totals,
        "identities": dict(sorted(per.items())),
        "reason_examples": dict(sorted(examples.items())),
    }


def merge_img2dataset_stats(stats: list[dict]) -> dict:
    """img2dataset's per-shard *_stats.json merged: counts summed, status_dict merged, duration summed."""
    out = {
        "shards": len(stats),
        "count": 0,
        "successes": 0,
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "duration_s_sum": 0.0,
    }
    status: Counter = Counter()
    for s in stats:
        for k in ("count", "successes", "failed_to_download", "failed_to_resize"):
            out[k] += int(s.get(k, 0))
        out["duration_s_sum"] += float(s.get("duration", 0.0))
        status.update(s.get("status_dict", {}))
    out["duration_s_sum"] = round(out["duration_s_sum"], 3)
    out["status_dict"] = dict(status.most_common())
    check_sum(
        out["count"],
        {k: out[k] for k in ("successes", "failed_to_download", "failed_to_resize")},
        "img2dataset shard counts",
    )
    return out


def render_markdown(report: dict) -> str:
    """report.md: totals, failure reasons with examples, per-identity table, settings."""
    t = report["totals"]
    lines = [
        "# Download report",
        "",
        f"- requested: {t['requested']}, downloaded: {t['downloaded']}, failed: {t['failed']}",
        f"- identities: {t['identities']} ({t['identities_with_images']} with at least one image)",
    ]
    s = report.get("settings", {})
    if s:
        lines += [
            f"- address policy: {s.get('address_policy')}",
            f"- opt-out headers: {'IGNORED (--ignore-opt-out)' if s.get('ignore_opt_out') else 'honoured'}"
            f" ({', '.join(s.get('disallowed_header_directives') or [])})",
            "- robots.txt: "
            + (
                "IGNORED (--ignore-robots)"
                if s.get("ignore_robots")
                else f"honoured for {', '.join(s.get('robots_agents') or [])}"
            ),
            f"- user agent: {s.get('user_agent')}",
        ]
    lines += ["", "## Failures by reason", "", "| reason | rows | example |", "|---|---:|---|"]
    for reason, n in sorted(t["failed_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])):
        ex = (report.get("reason_examples", {}).get(reason) or [""])[0].replace("|", "\\|")[:120]
        lines.append(f"| {reason} | {n} | {ex} |")
    lines += [
        "",
        "## Per identity",
        "",
        "| identity_id | requested | downloaded | failed | failed by reason |",
        "|---|---:|---:|---:|---|",
    ]
    for ident, e in report["identities"].items():
        fr = ", ".join(f"{k}: {v}" for k, v in e["failed_by_reason"].items())
        lines.append(f"| {ident} | {e['requested']} | {e['downloaded']} | {e['failed']} | {fr} |")
    i2d = report.get("img2dataset")
    if i2d:
        lines += [
            "",
            "## img2dataset (merged over shards and rounds)",
            "",
            f"- shards: {i2d['shards']}, count: {i2d['count']}, successes: {i2d['successes']}, "
            f"failed_to_download: {i2d['failed_to_download']}, failed_to_resize: {i2d['failed_to_resize']}",
        ]
    return "\n".join(lines) + "\n"
