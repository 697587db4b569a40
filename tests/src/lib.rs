//! End-to-end tests that cross the Remedios functions

pub mod fuzz;
pub mod voice;
