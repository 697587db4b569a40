//! End-to-end tests that cross the Remedios functions
