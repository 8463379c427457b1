//! A running worker picks up job-file edits without a restart.
