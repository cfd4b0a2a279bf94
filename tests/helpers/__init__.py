"""Builders shared by the tests and the benchmarks. Test modules import from here, never from
each other; conftest.py files hold fixtures only.

  images    real digits as PIL images, as class folders of PNGs, as unit-norm pixel rows
  userdata  a user's folder in every supported format and variant
  clirun    the `winnow` CLI in a real process: exit code, output, CPU time, imported modules
  faults    fault makers (broken, hostile, odd files), a folder of them, the promise check
  planted   an MNIST folder with planted copies and out-of-domain junk, embedded once
  ood       planted out-of-domain groups (noise, stripes, blank, text, photo crops) of 5-20 images
  crash     the kill driver of the crash-safety tests and the soak benchmark
  pages     a report's pages crawled as a browser follows them; names that are also markup
  prefect_server  a real `prefect server start` on a free port; stopping a process group by PID
  readme    README.md's fenced blocks, their acceptance markers and commands
  readme_workspace  the working folder the README's commands run in and what binds their placeholders
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.images import digit_images, digits_world, write_image_folder

REPO = Path(__file__).resolve().parents[2]  # the checkout: README.md, pyproject.toml, the layers

# Examples per property test in CI (tests/conftest.py loads the profiles; tests/test_structure.py
# checks that no property test overrides them).
CI_EXAMPLES = 50

__all__ = ["CI_EXAMPLES", "REPO", "digit_images", "digits_world", "write_image_folder"]
