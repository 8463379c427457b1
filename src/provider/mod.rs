//! Provider boundary.
