//! Audio decoding to 16 kHz mono f32 (filled by the audio work).
