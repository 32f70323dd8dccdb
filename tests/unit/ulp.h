/* ulp.h - the spacing of f32 values, for the unit tests that state errors in
 * ulps (test_llvm, test_math).  Included by one translation unit each. */
#ifndef KILN_TESTS_UNIT_ULP_H
#define KILN_TESTS_UNIT_ULP_H

#include <math.h>

/* The spacing of floats at |v| (the subnormal spacing below FLT_MIN). */
static inline double ulp_of(double v) {
    double a = fabs(v);
    if (a < 1.17549435e-38) return ldexp(1.0, -149);
    int e;
    frexp(a, &e);
    return ldexp(1.0, e - 24);
}

#endif
