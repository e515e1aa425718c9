"""The page of every plot, drawn without network.

    python -m vaepipe.report [-o reports/html] [dvc plots show options]
    python -m vaepipe.report --diff [REV ...] [-o reports/html] [dvc plots diff options]

`dvc plots show` (and `diff`) writes a page whose charts load vega, vega-lite and vega-embed
from a CDN, so offline they are blank. This builds an HTML template that carries the three
libraries inline, taken from the offline bundle of the pinned vl-convert-python wheel, and
hands it to DVC with `--html-template`. The template also lays the plots out in the order of
the top-level `plots:` of dvc.yaml: DVC writes every image after every chart.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import vl_convert
from dvc_render.base import Renderer

from vaepipe.errors import PipelineError, run_stage
from vaepipe.params import read_yaml

# DVC's chart templates are Vega-Lite 5 specs: compile them with the last Vega-Lite 5.
VEGA_LITE_VERSION = "5.21"
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>vaepipe plots</title>
<script>
(function () {
"use strict";
__SCRIPT__
})();
</script>
<style>
body { display: flex; flex-direction: column; align-items: flex-start; gap: 16px;
       font-family: sans-serif; }
__ORDER__
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def vega_script() -> str:
    """vega, vega-lite and vega-embed as one script that sets `window.vegaEmbed`.

    The bundle's hundreds of one- and two-letter top-level names would share the page's
    global scope with DVC's chart scripts (`var spec`), so the page runs it inside a function,
    strict like the module code it was built from. Inlined, `</script` inside the code would
    end the element early: `<\\/` means the same in the strings and regular expressions where
    it can appear.
    """
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    return re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)


def plot_ids(dvc_yaml: Path) -> list[str]:
    """The ids of the top-level plots of `dvc_yaml`, in their order there.

    An entry is a path or a one-key mapping {id: properties}. The file is read as DVC reads it
    (YAML 1.2).
    """
    pipeline = read_yaml(dvc_yaml) or {}
    return [entry if isinstance(entry, str) else next(iter(entry))
            for entry in pipeline.get("plots") or []]


def order_css(ids: list[str]) -> str:
    """CSS that shows the plots with these ids first, in this order, and any other after them.

    DVC names each plot's element with `Renderer.remove_special_chars` of the plot's id (a
    top-level plot's name, an image's path): the same function gives the selectors here,
    quoted, since such a name may start with a digit.
    """
    rules = [f"body > div {{ order: {len(ids) + 1}; }}"]
    for rank, plot_id in enumerate(ids, start=1):
        element_id = json.dumps(Renderer.remove_special_chars(plot_id))
        rules.append(f"div[id={element_id}] {{ order: {rank}; }}")
    return "\n".join(rules)


def page_template(dvc_yaml: Path) -> str:
    """The HTML template for `dvc plots --html-template`: DVC fills in `{plot_divs}`.

    No `{scripts}` placeholder: that is where DVC would put its CDN script tags.
    """
    return (PAGE.replace("__ORDER__", order_css(plot_ids(dvc_yaml)))
            .replace("__SCRIPT__", vega_script()))


def write_page(out: Path, revisions: list[str] | None, dvc_args: list[str]) -> Path:
    """Run `dvc plots show` (`diff REV...` when `revisions` is a list) into `out`; the page."""
    dvc_yaml = Path("dvc.yaml")
    if not dvc_yaml.is_file():
        raise PipelineError("no dvc.yaml in this folder: run this from the project's root")
    command = ["plots", "show"] if revisions is None else ["plots", "diff", *revisions]
    command += ["-o", str(out), *dvc_args]
    with tempfile.TemporaryDirectory() as folder:
        template = Path(folder) / "page.html"
        template.write_text(page_template(dvc_yaml), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *command, "--html-template", str(template)],
            stdout=subprocess.PIPE, text=True)
    what = f"`dvc {' '.join(command)}`"
    if result.returncode != 0:  # DVC has said why on stderr
        raise PipelineError(f"{what} failed (exit {result.returncode}), see above")
    if not result.stdout.strip():  # DVC prints the page's URL once it has written one
        raise PipelineError(f"{what} wrote no page: no plot has data (run `dvc repro`) "
                            "or matches the targets")
    return out / "index.html"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Write the page of every plot, which draws without network.",
        epilog="Other options (targets, --open, ...) go to `dvc plots show` or `diff`.")
    parser.add_argument("-o", "--out", type=Path, default=Path("reports/html"),
                        help="folder of the page (default reports/html)")
    parser.add_argument("--diff", nargs="*", metavar="REV",
                        help="compare revisions (`dvc plots diff`); none: HEAD and the "
                             "workspace")
    args, dvc_args = parser.parse_known_args()
    print(f"wrote {write_page(args.out, args.diff, dvc_args)}")


if __name__ == "__main__":
    run_stage(main)
