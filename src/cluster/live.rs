//! Placeholder: filled in by the live cluster view work.
