//! The mel filter bank whisper.cpp reads from the model file.
//!
//! This reproduces `librosa.filters.mel(sr, n_fft, n_mels)` with its
//! defaults (`fmin = 0`, `fmax = sr / 2`, `htk = False`, `norm = "slaney"`),
//! which is what OpenAI Whisper ships as `mel_filters.npz`: triangular
//! filters whose corners are equally spaced on the Slaney mel scale (linear
//! below 1 kHz, logarithmic above), each scaled to unit area in Hz.

/// Sample rate Whisper works at, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size Whisper uses for its spectrogram (25 ms windows at 16 kHz).
pub const N_FFT: usize = 400;

/// Width of one mel in Hz on the linear part of the Slaney scale.
const F_SP: f64 = 200.0 / 3.0;
/// Frequency where the Slaney scale turns logarithmic.
const MIN_LOG_HZ: f64 = 1000.0;
/// The mel value of [`MIN_LOG_HZ`].
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

/// Log step of the logarithmic part: 27 mels per factor 6.4 in frequency.
fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Converts a frequency in Hz to the Slaney mel scale (librosa `hz_to_mel`,
/// `htk=False`).
pub fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

/// Converts a Slaney mel value back to Hz (librosa `mel_to_hz`, `htk=False`).
pub fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// Number of frequency bins of a real FFT of size `n_fft`.
pub fn n_bins(n_fft: usize) -> usize {
    n_fft / 2 + 1
}

/// Computes the Slaney-normalised mel filter bank, row-major
/// `n_mels × (n_fft / 2 + 1)`, for frequencies from 0 to `sample_rate / 2`.
///
/// Computed in `f64` like librosa and rounded to `f32` at the end.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_bins(n_fft);
    let sr = f64::from(sample_rate);
    // Centre frequency of each FFT bin.
    let fft_freqs: Vec<f64> = (0..bins).map(|k| k as f64 * sr / n_fft as f64).collect();
    // n_mels + 2 corner frequencies equally spaced in mel from 0 to sr / 2.
    let max_mel = hz_to_mel(sr / 2.0);
    let corners: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(max_mel * i as f64 / (n_mels + 1) as f64))
        .collect();

    let mut out = Vec::with_capacity(n_mels * bins);
    for m in 0..n_mels {
        let (lo, centre, hi) = (corners[m], corners[m + 1], corners[m + 2]);
        // Slaney normalisation: each triangle gets unit area over Hz.
        let norm = 2.0 / (hi - lo);
        for &f in &fft_freqs {
            let rising = (f - lo) / (centre - lo);
            let falling = (hi - f) / (hi - centre);
            // librosa stores the triangle in f32 before normalising it.
            let weight = rising.min(falling).max(0.0) as f32;
            out.push((f64::from(weight) * norm) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const N_MELS: usize = 80;

    fn whisper_filters() -> Vec<f32> {
        mel_filters(SAMPLE_RATE, N_FFT, N_MELS)
    }

    #[test]
    fn slaney_scale_fixed_points() {
        assert_eq!(hz_to_mel(0.0), 0.0);
        // The linear part: 200/3 Hz per mel, so 1 kHz is mel 15.
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        // The log part: 27 mels per factor 6.4, so 6.4 kHz is mel 42.
        assert!((hz_to_mel(6400.0) - 42.0).abs() < 1e-12);
        for hz in [0.0, 37.0, 999.0, 1000.0, 1234.5, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
    }

    #[test]
    fn shape_and_sign() {
        let f = whisper_filters();
        assert_eq!(n_bins(N_FFT), 201);
        assert_eq!(f.len(), 80 * 201);
        assert!(f.iter().all(|&w| w >= 0.0 && w.is_finite()));
        // Every filter has some weight; the last bin (exactly sr/2) is the
        // upper corner of the last filter, so (up to rounding) has none.
        for row in f.chunks(201) {
            assert!(row.iter().any(|&w| w > 0.0));
            assert!(row[200] < 1e-9);
        }
        // DC gets no weight: the first triangle starts at 0 Hz.
        assert!(f.chunks(201).all(|row| row[0] == 0.0));
    }

    #[test]
    fn first_filter_matches_the_formula_by_hand() {
        // All three corners of filter 0 are on the linear part of the scale:
        // corners at 0, c and 2c Hz where c = (200/3) * mel(8 kHz) / 81.
        let mel_top = 15.0 + (8.0f64).ln() / (6.4f64.ln() / 27.0);
        let c = 200.0 / 3.0 * mel_top / 81.0;
        // Bin 1 is at 40 Hz, above the peak c ≈ 37.2 Hz, on the falling edge.
        assert!(c < 40.0 && 40.0 < 2.0 * c);
        let expected = (2.0 * c - 40.0) / c * (2.0 / (2.0 * c));
        let f = whisper_filters();
        assert!(
            (f64::from(f[1]) - expected).abs() < 1e-7,
            "{} vs {expected}",
            f[1]
        );
        // Bin 2 (80 Hz) is above the top corner 2c ≈ 74.5 Hz.
        assert_eq!(f[2], 0.0);
    }

    #[test]
    fn filters_have_unit_area_and_peak_near_their_centre() {
        let f = whisper_filters();
        let bin_hz = f64::from(SAMPLE_RATE) / N_FFT as f64;
        let max_mel = hz_to_mel(8000.0);
        for (m, row) in f.chunks(201).enumerate() {
            let lo = mel_to_hz(max_mel * m as f64 / 81.0);
            let centre = mel_to_hz(max_mel * (m + 1) as f64 / 81.0);
            let hi = mel_to_hz(max_mel * (m + 2) as f64 / 81.0);
            // Peak value is at most the triangle height 2 / (hi - lo) and is
            // at the bin nearest the centre (one of its two neighbours).
            let (peak_bin, peak) =
                row.iter().enumerate().fold(
                    (0, 0.0f32),
                    |best, (k, &w)| if w > best.1 { (k, w) } else { best },
                );
            let height = 2.0 / (hi - lo);
            assert!(f64::from(peak) <= height * (1.0 + 1e-6), "filter {m}");
            let peak_hz = peak_bin as f64 * bin_hz;
            assert!(
                (peak_hz - centre).abs() <= bin_hz,
                "filter {m}: peak at {peak_hz} Hz, centre {centre}"
            );
            // Filters much wider than a bin integrate (Riemann sum) to ~1.
            if hi - lo > 8.0 * bin_hz {
                let area: f64 = row.iter().map(|&w| f64::from(w) * bin_hz).sum();
                assert!((area - 1.0).abs() < 0.02, "filter {m}: area {area}");
            }
        }
    }

    #[test]
    fn corner_frequencies_cover_zero_to_nyquist() {
        let max_mel = hz_to_mel(8000.0);
        assert!((mel_to_hz(max_mel) - 8000.0).abs() < 1e-9);
        // Filter 79's upper corner is Nyquist; its centre is below it.
        let centre = mel_to_hz(max_mel * 80.0 / 81.0);
        assert!(centre < 8000.0 && centre > 7000.0);
    }
}
