//! WhatsApp Cloud API types: what Meta posts to our webhook.

pub mod webhook;
