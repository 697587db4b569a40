//! IEEE 754 half precision (binary16) and bfloat16 conversions.
//!
//! Only what the converter needs: widening to `f32` and rounding `f32` to
//! half precision with round-to-nearest, ties-to-even (what numpy does).

/// Widens an IEEE binary16 value (given by its bits) to `f32`, exactly.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: man * 2^-24. Normalise so that the leading one
            // becomes the implicit bit of the f32 mantissa.
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (man << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Rounds an `f32` to the nearest IEEE binary16 value (ties to even) and
/// returns its bits. Values too large become infinity; NaN stays NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        // Infinity or NaN (keep NaN quiet and non-zero).
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Result is subnormal (or zero): k * 2^-24 with k = M >> (14 - e).
        let shift = (14 - e) as u32;
        if shift > 24 {
            return sign;
        }
        let m = man | 0x80_0000;
        let k = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let k = if rem > half || (rem == half && k & 1 == 1) {
            k + 1
        } else {
            k
        };
        // A carry into bit 10 correctly yields the smallest normal number.
        return sign | k as u16;
    }
    let rounded = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let rounded = if rem > 0x1000 || (rem == 0x1000 && rounded & 1 == 1) {
        // A carry into the exponent is correct, up to and including infinity.
        rounded + 1
    } else {
        rounded
    };
    sign | rounded as u16
}

/// Widens a bfloat16 value (given by its bits) to `f32`, exactly.
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
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
