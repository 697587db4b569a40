//! Half precision (binary16) and bfloat16 as the converter writes and reads them, through
//! the `half` crate. The tests pin what the converter relies on: round-to-nearest,
//! ties-to-even (what numpy does), and exact widening.

use half::{bf16, f16};

/// The `f32` value of half-precision bits.
pub fn f16_to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// `x` rounded to half precision (nearest, ties to even), as bits.
pub fn f32_to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// The `f32` value of bfloat16 bits.
pub fn bf16_to_f32(b: u16) -> f32 {
    bf16::from_bits(b).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finite_half_round_trips_through_f32() {
        for h in 0..=u16::MAX {
            let is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
            if is_nan {
                assert!(f16_to_f32(h).is_nan());
                assert!(f16_to_f32(f32_to_f16(f16_to_f32(h))).is_nan());
                continue;
            }
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "half bits {h:#06x}");
        }
    }

    #[test]
    fn known_half_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        let ulp = 2f32.powi(-10);
        // Exactly half way between 1 and 1 + ulp: stays at the even 1.0.
        assert_eq!(f32_to_f16(1.0 + ulp / 2.0), 0x3c00);
        // Half way between 1 + ulp (odd) and 1 + 2 ulp: goes to the even one.
        assert_eq!(f32_to_f16(1.0 + 1.5 * ulp), 0x3c02);
        // Just above half way rounds up.
        assert_eq!(f32_to_f16(1.0 + 0.5 * ulp + 2f32.powi(-20)), 0x3c01);
        // Overflow: 65520 is half way to the next (non-existent) value.
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(-1e9), 0xfc00);
        // Subnormals: half of the smallest subnormal ties to zero,
        // three quarters rounds up to it.
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000);
        assert_eq!(f32_to_f16(1.5 * 2f32.powi(-25)), 0x0001);
        assert_eq!(f32_to_f16(-1e-30), 0x8000);
        // The largest subnormal plus a bit rounds into the smallest normal.
        assert_eq!(f32_to_f16(2f32.powi(-14) - 2f32.powi(-26)), 0x0400);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn bfloat16_widens() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc0a0), -5.0);
    }
}
