"""The plots page in a real headless browser cut off from every network.

The browser opens the page in a frame of a probe page that reads, once the charts are drawn,
each plot's place on the screen, its SVG marks and its images, and every request the page made.
"""

import html
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from dvc_render.base import Renderer

from vaepipe.errors import PipelineError
from vaepipe.report import plot_ids

# Every request for anything but a file goes to a proxy on a closed port, loopback included.
NO_NETWORK = ("--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>")
PROBE = """<!DOCTYPE html>
<html><body><pre id="result"></pre><script>
const frame = document.createElement("iframe");
frame.style = "width: 1280px; height: 20000px";
frame.onload = () => {
  const page = frame.contentDocument, started = Date.now();
  const plots = [...page.querySelectorAll("body > div")];
  const drawn = () => plots.every(div => !div.querySelector("script") || div.querySelector("svg"));
  (function report() {
    if (!drawn() && Date.now() - started < 20000) return setTimeout(report, 100);
    document.getElementById("result").textContent = JSON.stringify({
      plots: plots.map(div => ({
        id: div.id,
        top: div.getBoundingClientRect().top,
        marks: div.querySelectorAll("svg g.role-mark > *").length,
        images: [...div.querySelectorAll("img")].map(img => img.naturalWidth),
      })),
      requests: frame.contentWindow.performance.getEntriesByType("resource").map(r => r.name),
    });
  })();
};
frame.src = "__PAGE__";
document.body.append(frame);
</script></body></html>
"""
CHARTS = ["VAE loss per epoch", "Classifier loss per epoch", "Classifier accuracy per epoch",
          "Test confusion matrix"]
# The reader's order: the article's figure and the training curves first.
PAGE_ORDER = ["reports/figures/sample_grid.png", "reports/figures/loss_curves.png", *CHARTS,
              "reports/figures/reconstructions.png", "reports/figures/style_transfer.png",
              "reports/figures/latent_pca.png", "reports/figures/latent_traversals.png",
              "reports/figures/latent_units.png"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is not installed: apt-get install chromium"
    return path


def browse(chromium: str, url: str, tmp_path: Path) -> str:
    """The DOM of `url` after its scripts ran in headless chromium, with no network."""
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", *NO_NETWORK,
         f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
         "--virtual-time-budget=60000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def look_at(chromium: str, page: Path, tmp_path: Path) -> tuple[list[dict], list[str]]:
    """Each plot of the page from top to bottom, and the URLs that the page requested."""
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE.replace("__PAGE__", page.as_uri()))
    dom = browse(chromium, probe.as_uri(), tmp_path)
    found = re.search(r'<pre id="result">(.+?)</pre>', dom, flags=re.DOTALL)
    assert found, f"the probe reported nothing:\n{dom[-2000:]}"
    report = json.loads(html.unescape(found.group(1)))
    return sorted(report["plots"], key=lambda plot: plot["top"]), report["requests"]


def element_id(plot_id: str) -> str:
    """The id of the element that DVC draws a plot in."""
    return Renderer.remove_special_chars(plot_id)


def assert_all_drawn(plots: list[dict], images_each: int) -> None:
    """Each chart has marks, each figure all its images loaded, and they are in PAGE_ORDER."""
    for plot in plots:
        if plot["id"] in map(element_id, CHARTS):
            assert plot["marks"] > 0, plot
        else:
            assert len(plot["images"]) == images_each and min(plot["images"]) > 0, plot
    assert [plot["id"] for plot in plots] == [element_id(p) for p in PAGE_ORDER]


def report(project, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return project.run(sys.executable, "-m", "vaepipe.report", *args, check=check)


def test_the_browser_reaches_no_server(chromium, http_server, tmp_path):
    (http_server.root / "page.html").write_text("<p>served here</p>")
    url = f"{http_server.url}page.html"
    assert "served here" in urllib.request.urlopen(url).read().decode()  # it answers
    assert "served here" not in browse(chromium, url, tmp_path)


def test_the_page_draws_every_plot_offline_in_the_order_of_dvc_yaml(repo, chromium, tmp_path):
    result = report(repo)
    assert result.stdout.strip() == "wrote reports/html/index.html"
    plots, requests = look_at(chromium, repo.root / "reports" / "html" / "index.html", tmp_path)
    assert_all_drawn(plots, images_each=1)
    assert requests == []
    # The page is neither committed nor a pipeline output.
    assert repo.run("git", "status", "--porcelain").stdout == ""
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout


def test_diff_draws_both_revisions(repo, chromium, tmp_path):
    result = report(repo, "--diff", "HEAD", "-o", str(tmp_path / "diff"))
    assert result.stdout.strip() == f"wrote {tmp_path / 'diff' / 'index.html'}"
    plots, requests = look_at(chromium, tmp_path / "diff" / "index.html", tmp_path)
    assert_all_drawn(plots, images_each=2)  # HEAD's figure beside the workspace's
    assert requests == []


def test_errors_are_one_line(repo, tmp_path):
    failed = report(repo, "--diff", "no-such-revision", check=False)
    assert failed.returncode == 1
    assert "unknown Git revision 'no-such-revision'" in failed.stderr  # DVC's own line
    assert failed.stderr.splitlines()[-1] == (
        "error: `dvc plots diff no-such-revision -o reports/html` failed (exit 1), see above")
    outside = subprocess.run([sys.executable, "-m", "vaepipe.report"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert outside.returncode == 1
    assert outside.stderr == (
        "error: no dvc.yaml in this folder: run this from the project's root\n")


def test_dvc_yaml_is_read_as_dvc_reads_it(tmp_path):
    dvc_yaml = tmp_path / "dvc.yaml"
    # YAML 1.2, as DVC: a plot named `no` is that name (YAML 1.1 reads false)
    dvc_yaml.write_text("plots:\n  - no\n  - Loss per epoch: {x: step}\n")
    assert plot_ids(dvc_yaml) == ["no", "Loss per epoch"]
    dvc_yaml.write_text("plots:\n  - a.png\nplots:\n  - b.png\n")  # DVC refuses it too
    with pytest.raises(PipelineError, match=rf"^{dvc_yaml}: not valid YAML at line 3: "):
        plot_ids(dvc_yaml)
