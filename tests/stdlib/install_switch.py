"""Install the stdlib switch (``_shoal_stdlib_switch``) into this interpreter's site-packages.

Run by the test sessions (noxfile.py) inside their virtual environment. Inert unless
``SHOAL_STDLIB_SWITCH=1`` is set (the stdlib harness sets it for its own subprocesses only).
"""

from __future__ import annotations

import pathlib
import shutil
import sysconfig


def main() -> None:
    site = pathlib.Path(sysconfig.get_paths()["purelib"])
    here = pathlib.Path(__file__).with_name("_shoal_stdlib_switch.py")
    shutil.copyfile(here, site / "_shoal_stdlib_switch.py")
    (site / "_shoal_stdlib_switch.pth").write_text(
        "import _shoal_stdlib_switch; _shoal_stdlib_switch.activate()\n"
    )
    print(f"installed the stdlib switch in {site}")


if __name__ == "__main__":
    main()
