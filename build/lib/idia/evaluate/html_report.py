"""report.html: the run's report as one self-contained page (plots embedded, no network, no external script).

Readable on a phone and printable: the headline with its spread, the injection sweep (controlled experiments) and
TPR per occurrence bin (mined ground truth), metrics per k and per tau, a sortable per-identity table, the accounting
of every row, URL and identity, the resolved configuration with package versions, and the privacy notice.
`redact=True` writes identity ids where names would be, for reports that are shared. A small inline script makes
the tables sortable and records on the page whether every image decoded (`data-images-ok`) and any script error
(`data-errors`), which the browser test reads.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from idia.core import storage
from idia.core.atomic import write_text
from idia.evaluate.metrics import METRIC_NAMES, headline
from schemas import files

REPORT_HTML = "report.html"

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b; }
body { margin: 0 auto; max-width: 60rem; padding: 1rem; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; white-space: nowrap; }
th.sortable { cursor: pointer; background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline { font-size: 1.1rem; background: #f5f9ff; border: 1px solid #c9dcf5; padding: 0.75rem; border-radius: 6px; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
.notice { background: #fff6e5; border: 1px solid #f0d9a8; padding: 0.75rem; border-radius: 6px; }
pre { white-space: pre-wrap; word-break: break-all; font-size: 0.8rem; background: #f7f7f7; padding: 0.5rem; }
@media print { .scroll { overflow: visible; } th.sortable { cursor: auto; } details { display: block; } }
"""

_SCRIPT = """
(function () {
  var errors = 0;
  window.addEventListener('error', function () { errors += 1; document.body.dataset.errors = String(errors); });
  document.body.dataset.errors = '0';
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, col) {
      th.classList.add('sortable');
      th.title = 'sort';
      th.addEventListener('click', function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var asc = th.dataset.dir !== 'asc';
        rows.sort(function (a, b) {
          var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        th.dataset.dir = asc ? 'asc' : 'desc';
      });
    });
  });
  window.addEventListener('load', function () {
    var imgs = document.images, ok = 0;
    for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok += 1; } }
    document.body.dataset.imagesOk = ok + '/' + imgs.length;
  });
})();
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _fmt(ms: tuple[float, float] | None) -> str:
    return "n/a" if ms is None else f"{ms[0]:.3f} ± {ms[1]:.3f}"


def _table(header: list[str], rows: list[list], sortable: bool = False, numeric: set[int] = frozenset()) -> str:
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            if i in numeric and v is not None and not (isinstance(v, float) and pd.isna(v)):
                shown = f"{v:.3f}" if isinstance(v, float) else str(v)
                cells.append(f'<td class="num" data-v="{_e(v)}">{_e(shown)}</td>')
            else:
                cells.append(f"<td>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def rates_per_bin(attacks: pd.DataFrame, occurrences: pd.DataFrame, k: int) -> list[list]:
    """Per occurrence bin (the study's table): members, and the share of draws predicted member at k (mean, std)."""
    from idia.evaluate.sweep import rates_by

    table = occurrences[["identity_id", "bin", "membership", "count"]]
    rows = [
        [
            b,
            int(g["count"].min()),
            membership,
            r["n_identities"],
            "TPR" if membership == "member" else "FPR",
            r["mean"],
            r["std"],
        ]
        for (b, membership), g, r in rates_by(attacks, table, k, ["bin", "membership"])
    ]
    rows.sort(key=lambda r: (r[2] != "member", r[1]))
    return [[r[0], r[2], r[3], r[4], r[5], r[6]] for r in rows]


def comparison_section(folder: Path) -> list[str]:
    """The regenerated occurrence list against the study's published one (compare-lists' comparison.csv)."""
    path = folder / files.COMPARISON_CSV
    if not path.is_file():
        return []
    df = storage.read_csv(path, keep_default_na=False, na_values=[""])
    kinds = df["difference"].value_counts().to_dict()
    diff = df[df["difference"] != "same"].copy()
    diff["_abs"] = pd.to_numeric(diff["delta"], errors="coerce").abs().fillna(-1)
    diff = diff.sort_values(["_abs", "name"], ascending=[False, True])
    out = [
        "<h2>Regenerated list vs the study's published one</h2><p>"
        + ", ".join(f"{_e(k)}: {int(v)}" for k, v in sorted(kinds.items()))
        + f". Every name whose count or membership differs, largest difference first (also in <code>{_e(path)}</code>).</p>"
    ]
    cols = ["name", "count_published", "count_regenerated", "delta", "membership_published", "membership_regenerated"]
    rows = [[None if pd.isna(r[c]) else r[c] for c in cols] + [r["difference"]] for _, r in diff.iterrows()]
    out.append(
        _table(
            ["name", "published", "regenerated", "delta", "membership (published)", "membership (regenerated)", "what"],
            rows,
            sortable=True,
            numeric={1, 2, 3},
        )
        if rows
        else "<p>No differences.</p>"
    )
    return out


def write_html_report(
    out: str | Path,
    k: int,
    tau: int,
    times: dict | None = None,
    redact: bool = False,
    path: str | Path | None = None,
    models: list[tuple[str, str, str]] | None = None,
) -> Path:
    """Write the run folder's report.html (or `path`) from the stages' outputs; returns its path."""
    out = storage.location(out)
    d = {name: out / sub for name, sub in files.RUN_STAGE_DIRS.items()}
    ev = d["evaluate"]
    metrics = storage.read_parquet(ev / files.METRICS_PARQUET).to_pandas()
    attacks = storage.read_parquet(d["attack"] / files.ATTACKS_PARQUET).to_pandas()
    head = headline(metrics, k, tau)
    parts = [f"<h1>IDIA run report</h1><p>Run folder: <code>{_e(out)}</code></p>"]
    parts.append(
        f'<div class="headline"><strong>Headline</strong> (k = {k}, tau = {tau}, mean ± sample std (ddof = 1) over draws): '
        f"TPR {_e(_fmt(head.get('tpr')))}, FPR {_e(_fmt(head.get('fpr')))}, accuracy {_e(_fmt(head.get('accuracy')))}"
        "</div>"
    )
    parts.append(_table(["metric", "mean ± std"], [[m.upper(), _fmt(head.get(m))] for m in METRIC_NAMES]))
    if models:
        from idia.evaluate.report import model_rows

        parts.append(
            f"<h2>Models (k = {k}, tau = {tau})</h2><p>One attack and evaluation per model; the sections below are "
            f"the first model's. Folders: {', '.join(_e(e) for _, _, e in models)}.</p>"
        )
        parts.append(_table(["model", "TPR", "FPR", "accuracy", "precision"], model_rows(models, k, tau)))

    sweep = ev / files.SWEEP_CSV
    if sweep.is_file():
        s = storage.read_csv(sweep)
        parts.append(
            f"<h2>Injection sweep (k = {k})</h2><p>Members were injected into the training captions with "
            "different numbers of images each; non-members never appear.</p>"
        )
        parts.append(
            _table(
                ["group", "training images each", "identities", "rate", "mean", "std"],
                [[r.group, r.n_train_images, r.n_identities, r.rate.upper(), r.mean, r.std] for r in s.itertuples()],
                numeric={1, 2, 4, 5},
            )
        )
        plot = ev / files.PLOTS_DIR / "sweep_tpr_vs_training_images.png"
        if plot.is_file():
            parts.append(_img(plot, "TPR against training images per member"))
    occ_path = d["mine"] / files.IDENTITY_LISTS_DIR / files.OCCURRENCES_PARQUET
    if occ_path.is_file():
        occ = storage.read_parquet(occ_path).to_pandas()
        rows = rates_per_bin(attacks, occ, k)
        if rows:
            parts.append(
                f"<h2>Rates per occurrence bin (k = {k})</h2><p>Bins of how often the name is in the "
                "captions, as in the study's table.</p>"
            )
            parts.append(_table(["bin", "membership", "identities", "rate", "mean", "std"], rows, numeric={2, 4, 5}))

    parts.append(f"<h2>Metrics per k (tau = {tau})</h2>")
    at_tau = metrics[metrics["tau"] == tau]
    parts.append(
        _table(
            ["k", *[m.upper() for m in METRIC_NAMES]],
            [
                [int(kk), *[_fmt(headline(at_tau, kk, tau).get(m)) for m in METRIC_NAMES]]
                for kk in sorted(set(at_tau["k"]))
            ],
        )
    )
    parts.append(f"<h2>Metrics per tau (k = {k})</h2>")
    at_k = metrics[metrics["k"] == k]
    parts.append(
        _table(
            ["tau", *[m.upper() for m in METRIC_NAMES]],
            [[int(t), *[_fmt(headline(at_k, k, t).get(m)) for m in METRIC_NAMES]] for t in sorted(set(at_k["tau"]))],
        )
    )
    bin_k_path = ev / files.BIN_K_PARQUET
    if bin_k_path.is_file():
        from idia.evaluate.bins import pivot

        cells = storage.read_parquet(bin_k_path).to_pandas()
        if len(cells):
            grid = pivot(cells)
            parts.append(
                f"<h2>TPR per occurrence bin and k (tau = {tau})</h2><p>The study's analysis: members only, by how "
                "often their name is in the training captions; each cell the mean over draws. Also in "
                f"<code>{_e(files.BIN_K_CSV)}</code> with the std and the members per cell.</p>"
            )
            parts.append(
                _table(
                    ["k", *[str(c) for c in grid.columns]],
                    [[int(kk), *[None if pd.isna(v) else float(v) for v in row]] for kk, row in grid.iterrows()],
                    numeric=set(range(1, len(grid.columns) + 1)),
                )
            )
    parts += comparison_section(d["compare-lists"])
    for png in sorted((ev / files.PLOTS_DIR).glob("*.png")):
        if "sweep" not in png.name:
            parts.append(_img(png, png.stem.replace("_", " ")))

    per_path = ev / files.PER_IDENTITY_CSV
    if per_path.is_file():
        m = storage.read_csv(per_path, keep_default_na=False, na_values=[""])
        extra = [c for c in m.columns if c.startswith("captions_")]
        has_bin = "bin" in m.columns
        parts.append(
            f"<h2>Per identity (k = {int(m['k'].max()) if len(m) else k})</h2><p>Click a column to sort. "
            "Score: correct templates, mean over draws; member rate: share of draws predicted member."
            + (
                f" {', '.join(extra)}: captions counted in another matching mode, beside the ground truth's."
                if extra
                else ""
            )
            + f" Also in <code>{_e(files.PER_IDENTITY_CSV)}</code>.</p>"
        )
        rows = [
            [
                r["identity_id"],
                r["identity_id"] if redact else r["name"],
                None if pd.isna(r["is_member"]) else ("member" if str(r["is_member"]) == "True" else "non-member"),
                None if pd.isna(r["caption_count"]) else int(r["caption_count"]),
                *([r["bin"]] if has_bin else []),
                *[None if pd.isna(r[c]) else int(r[c]) for c in extra],
                float(r["score"]),
                float(r["member_rate"]),
                "member" if str(r["predicted_member"]) == "True" else "non-member",
            ]
            for _, r in m.iterrows()
        ]
        header = [
            "identity_id",
            "name" + (" (redacted)" if redact else ""),
            "ground truth",
            "caption count",
            *(["bin"] if has_bin else []),
            *extra,
            "score",
            "member rate",
            "predicted",
        ]
        n = 4 + has_bin + len(extra)
        parts.append(_table(header, rows, sortable=True, numeric={3, *range(4 + has_bin, n + 2)}))

    from idia.evaluate.report import accounting_lines

    parts.append("<h2>Accounting</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in accounting_lines(out)) + "</ul>")
    if times:
        parts.append(
            "<h2>Stages</h2>" + _table(["stage", "seconds"], [[n, round(t, 1)] for n, t in times.items()], numeric={1})
        )
    stages = {name: _read_json(d[name] / files.CONFIG_JSON) for name in ("mine", "download", "attack", "evaluate")}
    versions = stages["evaluate"].get("provenance") or {}
    config = {"pipeline": _read_json(out / files.PIPELINE_CONFIG_JSON)}
    for name, c in stages.items():
        c = c.get("config", c) if name == "download" else c  # the download folder nests its config
        config[name] = {k: v for k, v in c.items() if k != "provenance"}
    parts.append(
        "<h2>Configuration and versions</h2><details><summary>resolved configuration of every stage"
        f"</summary><pre>{_e(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre></details>"
        f"<pre>{_e(json.dumps(versions, indent=2, sort_keys=True))}</pre>"
    )
    parts.append(_PRIVACY)
    target = storage.location(path) if path else out / REPORT_HTML
    write_text(_page("IDIA run report", parts), target)
    return target


_PRIVACY = (
    '<h2>Personal data</h2><p class="notice">This report and its run folder hold personal data: names, '
    "and in the run folder faces. Keep them private; share only a report written with --redact "
    "(identity ids instead of names).</p>"
)


def _page(title: str, parts: list[str]) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def seeds_page(out: Path, table: pd.DataFrame, headlines: dict[int, dict], k: int, tau: int, plot: Path) -> Path:
    """report.html of a multi-seed run: every group's rate as mean ± std over seeds, the plot, per-seed headlines
    (each seed's own report.html holds its details)."""
    seeds = sorted(headlines)
    parts = [
        f"<h1>IDIA over training seeds</h1><p>Seeds {_e(', '.join(map(str, seeds)))}: one world, tiny CLIP and "
        f"attack each (folders <code>seed-N/</code>, each with its own report.html); k = {k}, tau = {tau}. Per "
        "seed a group's rate is the mean over draws; over seeds: mean ± sample std (ddof = 1), and the mean "
        "spread over draws beside it.</p>"
    ]
    parts.append(
        _table(
            [
                "group",
                "training images each",
                "identities",
                "rate",
                "mean over seeds",
                "std over seeds",
                "std over draws (mean)",
                "per seed",
            ],
            [
                [
                    r.group,
                    r.n_train_images,
                    r.n_identities,
                    r.rate.upper(),
                    r.mean_over_seeds,
                    r.std_over_seeds,
                    r.mean_std_over_draws,
                    r.per_seed,
                ]
                for r in table.itertuples()
            ],
            numeric={1, 2, 4, 5, 6},
        )
    )
    parts.append(_img(plot, "TPR against training images per member, over seeds"))
    parts.append(
        "<h2>Headline per seed</h2>"
        + _table(
            ["seed", "TPR", "FPR", "accuracy"],
            [[s, headlines[s].get("tpr"), headlines[s].get("fpr"), headlines[s].get("accuracy")] for s in seeds],
            numeric={1, 2, 3},
        )
    )
    parts.append(_PRIVACY)
    target = storage.location(out) / REPORT_HTML
    write_text(_page("IDIA over training seeds", parts), target)
    return target
