"""The library layer: one plain function per job, on specs and values. The CLI, the service and the audit all
call these; they never print except progress bars and raise only `vecbridge.errors.UserError`."""

from vecbridge.jobs.embedding import embed, embed_to_store
from vecbridge.jobs.migrate import inspect_store, migrate, translate_store
from vecbridge.jobs.texts_embedding import embed_texts, load_encoder
from vecbridge.jobs.translators import (
                                        REFERENCE_LIMIT,
                                        REFERENCE_TEXTS,
                                        evaluate,
                                        load_translator,
                                        save_translator,
                                        train_translator,
                                        translate,
                                        translate_vectors,
)

__all__ = ["REFERENCE_LIMIT", "REFERENCE_TEXTS",
           "embed", "embed_texts", "embed_to_store", "evaluate", "inspect_store", "load_encoder", "load_translator",
           "migrate", "save_translator", "train_translator", "translate", "translate_store", "translate_vectors"]
