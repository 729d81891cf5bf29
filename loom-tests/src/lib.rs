//! Loom models of hindsight's protocols live in `tests/`; see `ci/loom.sh`.
