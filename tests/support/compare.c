/* compare.c - see compare.h. */
#include "tests/support/compare.h"

#include <math.h>

double
ts_rel_err(const float *a, const float *b, int64_t n)
{
	double den = 0, num = 0;
	for (int64_t i = 0; i < n; i++) {
		den = fmax(den, fabs((double)b[i]));
		double e = fabs((double)a[i] - b[i]);
		num = isnan(e) ? INFINITY : fmax(num, e);
	}
	return den > 0 ? num / den : num;
}

int64_t
ts_argmax(const float *x, int64_t n)
{
	int64_t b = 0;
	for (int64_t i = 1; i < n; i++)
		if (x[i] > x[b])
			b = i;
	return b;
}

double
ts_bits(const float *logits, int64_t n, int64_t target)
{
	float mx = logits[0];
	for (int64_t k = 1; k < n; k++)
		mx = logits[k] > mx ? logits[k] : mx;
	double z = 0;
	for (int64_t k = 0; k < n; k++)
		z += exp((double)logits[k] - mx);
	return (log(z) - ((double)logits[target] - mx)) / log(2.0);
}
