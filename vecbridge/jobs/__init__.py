"""The library layer: one plain function per job, on specs and values. The CLI, the service and the audit all
call these; they never print except progress bars and raise only `vecbridge.errors.UserError`."""

from vecbridge.jobs.embedding import embed
from vecbridge.jobs.inspect import inspect_store
from vecbridge.jobs.migrate import migrate
from vecbridge.jobs.progressive import status as progressive_status
from vecbridge.jobs.texts_embedding import embed_texts, load_encoder
from vecbridge.jobs.translate import translate, translate_vectors
from vecbridge.jobs.translators import (
    REFERENCE_LIMIT,
    REFERENCE_TEXTS,
    evaluate,
    load_translator,
    save_translator,
    train_translator,
)

__all__ = ["REFERENCE_LIMIT", "REFERENCE_TEXTS", "embed", "embed_texts", "evaluate", "inspect_store", "load_encoder",
           "load_translator", "migrate", "progressive_status", "save_translator", "train_translator", "translate",
           "translate_vectors"]
