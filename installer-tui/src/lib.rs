//! The text installer (ratatui) and the unattended answer-file path over one install engine. Not implemented yet (see the installer issue).
