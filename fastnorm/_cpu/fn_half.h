/*
 * Scalar float16 / bfloat16 <-> float32 conversions.  Branch-free (selects
 * only) so that compilers vectorize them in any loop; exact for every half,
 * round-to-nearest-even on output, NaN quieted and its payload truncated
 * exactly as the F16C / NEON instructions do, so the software and the
 * hardware conversions give the same bits (tests/test_half.py checks every
 * half and the float patterns around every rounding boundary).
 */
#ifndef FN_HALF_H
#define FN_HALF_H

#include "fn_base.h"

FN_INLINE float fn_u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
FN_INLINE uint32_t fn_f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

FN_INLINE float fn_h2f(uint16_t h) /* after F. Giesen */
{
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t e = o & 0x0f800000u;
    float fn, fd;
    o += 0x38000000u;                                                /* rebias exponent */
    o += (e == 0x0f800000u) ? 0x38000000u : 0u;                      /* inf / nan */
    o |= (e == 0x0f800000u && (o & 0x007fe000u)) ? 0x00400000u : 0u; /* quiet a NaN */
    fn = fn_u2f(o);
    fd = fn_u2f(o + 0x00800000u) - 6.103515625e-05f; /* zero / subnormal */
    fn = (e == 0u) ? fd : fn;
    return fn_u2f(fn_f2u(fn) | ((uint32_t)(h & 0x8000u) << 16));
}

FN_INLINE uint16_t fn_f2h(float f)
{
    uint32_t u = fn_f2u(f);
    uint32_t sign = u & 0x80000000u;
    uint32_t a = u ^ sign;
    uint32_t r_inf = (a > 0x7f800000u) ? (0x7e00u | ((a >> 13) & 0x3ffu)) : 0x7c00u;
    uint32_t r_sub = fn_f2u(fn_u2f(a) + 0.5f) - 0x3f000000u;
    uint32_t r_norm = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;
    uint32_t r = (a >= 0x47800000u) ? r_inf : ((a < 0x38800000u) ? r_sub : r_norm);
    return (uint16_t)(r | (sign >> 16));
}

/* bfloat16: the upper half of a float32; round to nearest even on output */
FN_INLINE float fn_b2f(uint16_t h) { return fn_u2f((uint32_t)h << 16); }
FN_INLINE uint16_t fn_f2b(float f)
{
    uint32_t x = fn_f2u(f);
    uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    return (uint16_t)(((x & 0x7fffffffu) > 0x7f800000u) ? ((x >> 16) | 0x40u) : r);
}

#endif /* FN_HALF_H */
