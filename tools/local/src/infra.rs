//! Reads infra/template.yaml (filled by the infra work).
