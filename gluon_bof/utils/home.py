"""Where gluon-bof keeps what it makes and downloads: ``$GLUON_BOF_HOME`` (default
``~/.gluon_bof``), so that an installed copy never writes into its own site-packages and a source
checkout is not needed. ``models/`` holds GluonCV's weights (the weights store), ``datasets/``
the downloaded datasets and the built-in generated data (``datasets/synthetic``)."""
import os

__all__ = ["gluon_bof_home", "default_data_root"]


def gluon_bof_home() -> str:
    """``$GLUON_BOF_HOME``, else ``~/.gluon_bof`` (expanded, not created)."""
    return os.path.abspath(os.path.expanduser(os.environ.get("GLUON_BOF_HOME", os.path.join("~", ".gluon_bof"))))


def default_data_root(name: str = "synthetic") -> str:
    """The built-in generated dataset ``name`` ('synthetic': detection; generated on first use):
    ``$GLUON_BOF_DATA`` for the detection data when set, else ``$GLUON_BOF_HOME/datasets/<name>``."""
    if name == "synthetic" and os.environ.get("GLUON_BOF_DATA"):
        return os.environ["GLUON_BOF_DATA"]
    return os.path.join(gluon_bof_home(), "datasets", name)
