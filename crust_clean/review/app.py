"""Open the FiftyOne App on a run's exported dataset, ready to review: the queue view, our plugin found, no
analytics banner, and served on this machine only unless the user names another address.

The App server is a process FiftyOne starts; it reads the plugin folder and the do-not-track setting from the
environment it inherits, so both are set in ``os.environ`` before it starts (and in ``fiftyone.config`` for this
process). A user's own ``FIFTYONE_PLUGINS_DIR`` or ``FIFTYONE_DO_NOT_TRACK`` is left as it is.
"""

from __future__ import annotations

import ipaddress
import os
import warnings
from pathlib import Path

from ..config import PLUGIN_DIR
from ..errors import BadInputError, CrustCleanWarning
from ..run.folder import Run
from .decision_store import TO_REVIEW_VIEW
from .fiftyone import default_dataset_name

PLUGIN_NAME = "@crust-clean/review"
#: The App listens here unless an address is given: the App has no login, so only this machine reaches it (a
#: remote reviewer comes in through an SSH tunnel, see the README).
LOCAL_ADDRESS = "127.0.0.1"


def launch_review(run: Run | str | Path, *, name: str | None = None, port: int = 5151,
                  address: str = LOCAL_ADDRESS, remote: bool = False):
    """Open the FiftyOne App on the run's exported dataset, in the ``to review`` view; returns the session.

    ``remote``: serve without opening a browser (a headless server). ``address``: where the App listens; anything
    but a loopback address warns (``CrustCleanWarning``) that everyone who can reach it can change decisions.
    """
    prepare_app_environment()
    import fiftyone as fo

    if not _is_loopback(address):
        warnings.warn(f"the App listens on {address}:{port} without a login: anyone who can reach it can read the "
                      f"images and change decisions (an SSH tunnel to {LOCAL_ADDRESS} is safer)", CrustCleanWarning,
                      stacklevel=2)
    run = Run.of(run)
    name = name or default_dataset_name(run)
    if not fo.dataset_exists(name):
        raise BadInputError(f"no FiftyOne dataset {name!r}: run `crust-clean export fiftyone {run.path}` first")
    dataset = fo.load_dataset(name)
    view = dataset.load_saved_view(TO_REVIEW_VIEW) if dataset.has_saved_view(TO_REVIEW_VIEW) else dataset
    return fo.launch_app(view, port=port, address=address, remote=remote, auto=not remote)


def prepare_app_environment() -> None:
    """Point FiftyOne at our plugin and turn its analytics off, unless the user set either; warn when a plugin
    folder of the user's lacks our plugin."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_PLUGINS_DIR", str(PLUGIN_DIR))
    import fiftyone as fo
    import fiftyone.plugins as fop

    fo.config.do_not_track = os.environ["FIFTYONE_DO_NOT_TRACK"].lower() == "true"
    fo.config.plugins_dir = os.environ["FIFTYONE_PLUGINS_DIR"]
    if PLUGIN_NAME not in {plugin.name for plugin in fop.list_plugins(enabled="all")}:
        warnings.warn(f"the review plugin is not in FIFTYONE_PLUGINS_DIR={fo.config.plugins_dir}: the App will have "
                      f"no crust-clean operators; link or copy {PLUGIN_DIR} into it", CrustCleanWarning, stacklevel=3)


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
